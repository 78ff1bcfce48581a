"""More words for the trained emoji, for training captions that ask for them (``SceneConfig.paraphrases``).

Why: with one or two words per emoji, the model learns those words rather than what the frozen text
encoder says they mean, so a prompt naming an emoji by a word it never saw (the atlas's held-out last
synonym, "cycle" for bicycle) is drawn far less reliably. Several more everyday words per emoji push it
to read meaning. No entry is a held-out synonym, names another emoji, or holds a colour, count, size or
position word, so the held-out evaluation and the caption parser keep their meaning (tests check this).
Written for the curriculum's first 30 emoji, the ones trained so far.
"""

PARAPHRASES: dict[str, tuple[str, ...]] = {
    "cat": ("tabby", "pussycat", "tomcat", "feline"),
    "apple": ("russet", "eating apple", "cooking apple"),
    "car": ("motorcar", "sedan", "hatchback"),
    "sun": ("solar disc", "noonday sun", "bright sun"),
    "heart": ("valentine", "heart shape", "love symbol"),
    "frog": ("bullfrog", "pond frog", "amphibian"),
    "banana": ("ripe banana", "sweet banana", "banana fruit"),
    "rocket": ("space rocket", "starship", "launch vehicle"),
    "tree": ("elm", "beech", "shade tree", "sapling"),
    "house": ("dwelling", "bungalow", "residence", "cabin"),
    "fish": ("trout", "minnow", "goldfish"),
    "pizza": ("pepperoni pizza", "pizza pie", "margherita"),
    "bus": ("omnibus", "city bus", "shuttle bus"),
    "star": ("gold star", "star shape", "lucky star"),
    "ball": ("kickball", "match ball", "leather ball"),
    "penguin": ("king penguin", "adelie penguin", "flightless bird"),
    "watermelon": ("watermelon slice", "water melon", "summer melon"),
    "airplane": ("aeroplane", "airliner", "aircraft"),
    "cactus": ("saguaro", "desert plant", "cactus plant"),
    "castle": ("citadel", "stronghold", "chateau"),
    "octopus": ("devilfish", "cephalopod", "kraken"),
    "strawberry": ("wild strawberry", "garden strawberry", "summer berry"),
    "sailboat": ("sailing boat", "sloop", "schooner", "catamaran"),
    "cloud": ("storm cloud", "puffy cloud", "cloudlet"),
    "balloon": ("helium balloon", "toy balloon", "birthday balloon"),
    "butterfly": ("swallowtail", "monarch butterfly", "winged insect"),
    "carrot": ("baby carrot", "taproot", "garden carrot"),
    "bicycle": ("pushbike", "pedal bike", "road bike", "velocipede"),
    "rainbow": ("rainbow arc", "sky arch", "prism arc"),
    "key": ("latchkey", "skeleton key", "brass key", "passkey"),
}
