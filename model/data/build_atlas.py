"""Render the curated emoji set from the Noto Color Emoji font into a committed sprite atlas.

Training and tests never touch the system font: this CLI is run once, and its two outputs
(``assets/emoji_atlas.png`` and ``assets/emoji.json``) are committed. The order of ``EMOJI``
is the curriculum order (``SceneConfig.num_emoji`` takes the first N), so the first thirty
entries are the most distinct silhouettes and colours across categories.

Usage: ``python -m model.data.build_atlas [--font PATH] [--sprite 64]``
"""

import argparse
import json
import logging
import math
import unicodedata
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

logger = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
FONT_SIZE = 109  # the only size the bitmap font renders at
VS16 = "\ufe0f"

# name, character(s), category, synonyms, plural. Names and synonyms are unique across the set
# and never a colour word, so a caption word names exactly one emoji.
EMOJI: list[tuple[str, str, str, tuple[str, ...], str]] = [
    ("cat", "\U0001f431", "animal", ("kitty", "kitten"), "cats"),
    ("apple", "\U0001f34e", "food", ("pippin",), "apples"),
    ("car", "\U0001f697", "vehicle", ("automobile", "auto"), "cars"),
    ("sun", "\u2600" + VS16, "nature", ("daystar",), "suns"),
    ("heart", "\u2764" + VS16, "object", ("love heart",), "hearts"),
    ("frog", "\U0001f438", "animal", ("toad",), "frogs"),
    ("banana", "\U0001f34c", "food", ("plantain",), "bananas"),
    ("rocket", "\U0001f680", "vehicle", ("spaceship", "spacecraft"), "rockets"),
    ("tree", "\U0001f333", "nature", ("oak",), "trees"),
    ("house", "\U0001f3e0", "building", ("home", "cottage"), "houses"),
    ("fish", "\U0001f41f", "animal", ("tuna",), "fish"),
    ("pizza", "\U0001f355", "food", ("pizza slice",), "pizzas"),
    ("bus", "\U0001f68c", "vehicle", ("coach",), "buses"),
    ("star", "\u2b50", "nature", ("starburst",), "stars"),
    ("ball", "\u26bd", "object", ("football", "soccer ball"), "balls"),
    ("penguin", "\U0001f427", "animal", ("emperor penguin",), "penguins"),
    ("watermelon", "\U0001f349", "food", ("melon",), "watermelons"),
    ("airplane", "\u2708" + VS16, "vehicle", ("plane", "jet"), "airplanes"),
    ("cactus", "\U0001f335", "nature", ("succulent",), "cacti"),
    ("castle", "\U0001f3f0", "building", ("fortress", "palace"), "castles"),
    ("octopus", "\U0001f419", "animal", ("squid",), "octopuses"),
    ("strawberry", "\U0001f353", "food", ("berry",), "strawberries"),
    ("sailboat", "\u26f5", "vehicle", ("yacht", "dinghy"), "sailboats"),
    ("cloud", "\u2601" + VS16, "nature", ("raincloud",), "clouds"),
    ("balloon", "\U0001f388", "object", ("party balloon",), "balloons"),
    ("butterfly", "\U0001f98b", "animal", ("moth",), "butterflies"),
    ("carrot", "\U0001f955", "food", ("root vegetable",), "carrots"),
    ("bicycle", "\U0001f6b2", "vehicle", ("bike", "cycle"), "bicycles"),
    ("rainbow", "\U0001f308", "nature", ("spectrum",), "rainbows"),
    ("key", "\U0001f511", "object", ("door key",), "keys"),
    ("dog", "\U0001f436", "animal", ("puppy", "doggy"), "dogs"),
    ("donut", "\U0001f369", "food", ("doughnut",), "donuts"),
    ("train", "\U0001f682", "vehicle", ("locomotive", "steam engine"), "trains"),
    ("snowflake", "\u2744" + VS16, "nature", ("snow crystal",), "snowflakes"),
    ("gift", "\U0001f381", "object", ("present", "parcel"), "gifts"),
    ("pig", "\U0001f437", "animal", ("piggy", "hog"), "pigs"),
    ("burger", "\U0001f354", "food", ("hamburger", "cheeseburger"), "burgers"),
    ("helicopter", "\U0001f681", "vehicle", ("chopper",), "helicopters"),
    ("fire", "\U0001f525", "nature", ("flame", "blaze"), "fires"),
    ("crown", "\U0001f451", "object", ("tiara",), "crowns"),
    ("panda", "\U0001f43c", "animal", ("panda bear",), "pandas"),
    ("cherry", "\U0001f352", "food", ("wild cherry",), "cherries"),
    ("truck", "\U0001f69a", "vehicle", ("lorry", "van"), "trucks"),
    ("tulip", "\U0001f337", "nature", ("bloom",), "tulips"),
    ("guitar", "\U0001f3b8", "object", ("electric guitar",), "guitars"),
    ("turtle", "\U0001f422", "animal", ("tortoise",), "turtles"),
    ("lemon", "\U0001f34b", "food", ("citron",), "lemons"),
    ("ship", "\U0001f6a2", "vehicle", ("ocean liner", "steamship"), "ships"),
    ("moon", "\U0001f319", "nature", ("crescent moon", "half moon"), "moons"),
    ("bell", "\U0001f514", "object", ("chime",), "bells"),
    ("whale", "\U0001f433", "animal", ("orca",), "whales"),
    ("broccoli", "\U0001f966", "food", ("floret",), "broccolis"),
    ("tractor", "\U0001f69c", "vehicle", ("farm tractor",), "tractors"),
    ("lightning", "\u26a1", "nature", ("lightning bolt", "thunderbolt"), "lightning bolts"),
    ("trophy", "\U0001f3c6", "object", ("cup", "award"), "trophies"),
    ("snail", "\U0001f40c", "animal", ("slug",), "snails"),
    ("pineapple", "\U0001f34d", "food", ("ananas",), "pineapples"),
    ("taxi", "\U0001f695", "vehicle", ("cab",), "taxis"),
    ("palm tree", "\U0001f334", "nature", ("palm", "coconut tree"), "palm trees"),
    ("umbrella", "\u2602" + VS16, "object", ("parasol", "brolly"), "umbrellas"),
    ("chicken", "\U0001f414", "animal", ("hen",), "chickens"),
    ("mushroom", "\U0001f344", "food", ("toadstool",), "mushrooms"),
    ("ambulance", "\U0001f691", "vehicle", ("emergency van",), "ambulances"),
    ("sunflower", "\U0001f33b", "nature", ("helianthus",), "sunflowers"),
    ("lightbulb", "\U0001f4a1", "object", ("light bulb", "lamp"), "lightbulbs"),
    ("unicorn", "\U0001f984", "animal", ("magic horse",), "unicorns"),
    ("cake", "\U0001f382", "food", ("birthday cake", "gateau"), "cakes"),
    ("firetruck", "\U0001f692", "vehicle", ("fire engine",), "firetrucks"),
    ("rose", "\U0001f339", "nature", ("garden rose",), "roses"),
    ("book", "\U0001f4d5", "object", ("notebook", "novel"), "books"),
    ("elephant", "\U0001f418", "animal", ("mammoth",), "elephants"),
    ("ice cream", "\U0001f366", "food", ("soft serve", "cone"), "ice creams"),
    ("motorcycle", "\U0001f3cd" + VS16, "vehicle", ("motorbike",), "motorcycles"),
    ("volcano", "\U0001f30b", "nature", ("eruption",), "volcanoes"),
    ("clock", "\u23f0", "object", ("alarm clock",), "clocks"),
    ("bee", "\U0001f41d", "animal", ("honeybee", "bumblebee"), "bees"),
    ("croissant", "\U0001f950", "food", ("crescent roll",), "croissants"),
    ("racecar", "\U0001f3ce" + VS16, "vehicle", ("racing car", "race car"), "racecars"),
    ("maple leaf", "\U0001f341", "nature", ("autumn leaf",), "maple leaves"),
    ("gem", "\U0001f48e", "object", ("diamond", "jewel"), "gems"),
    ("monkey", "\U0001f435", "animal", ("ape", "chimp"), "monkeys"),
    ("avocado", "\U0001f951", "food", ("guacamole fruit",), "avocados"),
    ("police car", "\U0001f693", "vehicle", ("patrol car", "cop car"), "police cars"),
    ("clover", "\U0001f340", "nature", ("four-leaf clover", "shamrock"), "clovers"),
    ("teddy bear", "\U0001f9f8", "object", ("teddy", "plush bear"), "teddy bears"),
    ("ladybug", "\U0001f41e", "animal", ("ladybird", "beetle"), "ladybugs"),
    ("cheese", "\U0001f9c0", "food", ("cheese wedge",), "cheeses"),
    ("ufo", "\U0001f6f8", "vehicle", ("flying saucer",), "ufos"),
    ("wave", "\U0001f30a", "nature", ("ocean wave", "breaker"), "waves"),
    ("robot", "\U0001f916", "object", ("android", "droid"), "robots"),
    ("fox", "\U0001f98a", "animal", ("vixen",), "foxes"),
    ("corn", "\U0001f33d", "food", ("corncob", "maize cob"), "corns"),
    ("scooter", "\U0001f6f4", "vehicle", ("kick scooter",), "scooters"),
    ("snowman", "\u26c4", "nature", ("snow figure",), "snowmen"),
    ("ghost", "\U0001f47b", "object", ("spook", "phantom"), "ghosts"),
    ("crab", "\U0001f980", "animal", ("crustacean",), "crabs"),
    ("tomato", "\U0001f345", "food", ("love apple",), "tomatoes"),
    ("canoe", "\U0001f6f6", "vehicle", ("kayak",), "canoes"),
    ("earth", "\U0001f30d", "nature", ("globe", "planet"), "earths"),
    ("anchor", "\u2693", "object", ("ship anchor",), "anchors"),
    ("owl", "\U0001f989", "animal", ("owlet",), "owls"),
    ("eggplant", "\U0001f346", "food", ("aubergine",), "eggplants"),
    ("tram", "\U0001f68b", "vehicle", ("streetcar", "trolley"), "trams"),
    ("mountain", "\u26f0" + VS16, "nature", ("peak", "hill"), "mountains"),
    ("hammer", "\U0001f528", "object", ("mallet",), "hammers"),
    ("rabbit", "\U0001f430", "animal", ("bunny", "hare"), "rabbits"),
    ("cookie", "\U0001f36a", "food", ("biscuit",), "cookies"),
    ("lollipop", "\U0001f36d", "food", ("sucker", "candy"), "lollipops"),
    ("tent", "\u26fa", "building", ("camping tent",), "tents"),
    ("dolphin", "\U0001f42c", "animal", ("porpoise",), "dolphins"),
    ("pear", "\U0001f350", "food", ("bartlett",), "pears"),
    ("drum", "\U0001f941", "object", ("snare drum",), "drums"),
    ("lion", "\U0001f981", "animal", ("lioness",), "lions"),
    ("cupcake", "\U0001f9c1", "food", ("muffin", "fairy cake"), "cupcakes"),
    ("camera", "\U0001f4f7", "object", ("photo camera",), "cameras"),
    ("shark", "\U0001f988", "animal", ("sea predator",), "sharks"),
    ("pretzel", "\U0001f968", "food", ("bretzel",), "pretzels"),
    ("television", "\U0001f4fa", "object", ("tv", "telly"), "televisions"),
    ("giraffe", "\U0001f992", "animal", ("camelopard",), "giraffes"),
    ("hot pepper", "\U0001f336" + VS16, "food", ("chili", "chilli pepper"), "hot peppers"),
    ("dice", "\U0001f3b2", "object", ("die", "game die"), "dice"),
    ("koala", "\U0001f428", "animal", ("koala bear",), "koalas"),
    ("coconut", "\U0001f965", "food", ("coco",), "coconuts"),
    ("magnet", "\U0001f9f2", "object", ("horseshoe magnet",), "magnets"),
    ("alien", "\U0001f47d", "object", ("extraterrestrial", "martian"), "aliens"),
]


def render_glyph(font: ImageFont.FreeTypeFont, char: str, sprite: int) -> Image.Image:
    """Draw one glyph at the font's native size, crop to its ink, pad square and downscale."""
    canvas = Image.new("RGBA", (FONT_SIZE * 2, FONT_SIZE * 2), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((FONT_SIZE // 4, FONT_SIZE // 4), char, font=font, embedded_color=True)
    bbox = canvas.getbbox()
    if bbox is None:
        raise ValueError(f"Glyph {char!r} rendered empty; the font lacks it.")
    glyph = canvas.crop(bbox)
    side = max(glyph.size)
    square = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    square.paste(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    # Pillow resizes RGBA in premultiplied space, so no dark fringes appear at the edges.
    return square.resize((sprite, sprite), Image.Resampling.LANCZOS)


def check_table() -> None:
    """Fail early on duplicate names or synonyms: a caption word must name one emoji."""
    words: dict[str, str] = {}
    for name, char, _, synonyms, plural in EMOJI:
        for word in (name, plural, *synonyms):
            if words.setdefault(word, name) != name:
                raise ValueError(f"Word {word!r} is used by both {words[word]!r} and {name!r}.")
        if not char:
            raise ValueError(f"Emoji {name!r} has no character.")


def build(font_path: Path, sprite: int, out_dir: Path) -> None:
    """Write the atlas PNG (square grid, row-major in curriculum order) and its JSON index."""
    check_table()
    font = ImageFont.truetype(str(font_path), FONT_SIZE)
    columns = math.ceil(math.sqrt(len(EMOJI)))
    rows = math.ceil(len(EMOJI) / columns)
    atlas = Image.new("RGBA", (columns * sprite, rows * sprite), (0, 0, 0, 0))
    entries = []
    for index, (name, char, category, synonyms, plural) in enumerate(EMOJI):
        row, col = divmod(index, columns)
        atlas.paste(render_glyph(font, char, sprite), (col * sprite, row * sprite))
        entries.append(
            {
                "name": name,
                "char": char,
                "codepoints": [f"U+{ord(c):04X}" for c in char],
                "unicode_name": unicodedata.name(char[0]),
                "category": category,
                "synonyms": list(synonyms),
                "plural": plural,
                "cell": [row, col],
            }
        )
        logger.info("%3d %-12s %s", index, name, unicodedata.name(char[0]))
    out_dir.mkdir(parents=True, exist_ok=True)
    atlas.save(out_dir / "emoji_atlas.png", optimize=True)
    index = {"sprite_size": sprite, "columns": columns, "font": font_path.name, "emoji": entries}
    (out_dir / "emoji.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    logger.info("Wrote %d emoji to %s", len(entries), out_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--font", type=Path, default=DEFAULT_FONT, help="path to NotoColorEmoji.ttf")
    parser.add_argument("--sprite", type=int, default=64, help="atlas cell size in pixels")
    parser.add_argument("--out", type=Path, default=ASSETS, help="output folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build(args.font, args.sprite, args.out)


if __name__ == "__main__":
    main()
