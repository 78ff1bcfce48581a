"""Chinese prompts in the emoji-scenes vocabulary, translated into the English captions the model was trained on.

The text encoder is an English MiniLM: it turns Chinese into unknown tokens, so 蓝色背景上左边有一只猫 drew a
banana. The domain is small and closed (emoji, colours, positions, sizes, counts, styles), so a reviewed
dictionary and a few word-order rules read a Chinese prompt made of these words exactly, and the model gets
"a cat on the left on a blue background". What the dictionary cannot read is left out of the translation
and reported, so a warning can name it; nothing is guessed.

The emoji words were written by hand from each atlas entry's Unicode name and English words, choosing the
word a person would type. Every emoji of the atlas has at least one. Left out on purpose, because they are
ambiguous or mean something else too: 车 (any vehicle), 花 (any flower), 钟 (clock or bell), 灯 (any lamp),
萝卜 (radish or carrot), 象 (also "image"), 机车 (motorcycle in Taiwan, locomotive elsewhere), 太阳花 (sunflower
or moss rose), 的士 (starts with the particle 的), 色子 (starts with 色), 红叶 (any red leaves).
``FALSE_FRIENDS`` holds common words that contain a domain word but name something else (火鸡 is a turkey, not
fire and a chicken): they are matched whole and reported, never half-translated.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import NamedTuple

from model.data.atlas import load_atlas
from model.data.captions import (
    BACKGROUND_PHRASES,
    COUNT_WORDS,
    POSITION_PHRASES,
    SIZE_WORDS,
    STYLE_SUFFIXES,
    fix_articles,
    indefinite_article,
)

# Atlas emoji name -> the Chinese words for it, the commonest first.
EMOJI: dict[str, tuple[str, ...]] = {
    "cat": ("猫", "猫咪", "小猫", "猫猫"),
    "apple": ("苹果",),
    "car": ("汽车", "小汽车", "轿车", "小轿车"),
    "sun": ("太阳",),
    "heart": ("爱心", "心", "心形", "红心"),
    "frog": ("青蛙", "蛙"),
    "banana": ("香蕉",),
    "rocket": ("火箭",),
    "tree": ("树", "树木"),
    "house": ("房子", "房屋", "屋子"),
    "fish": ("鱼", "小鱼", "金鱼", "热带鱼", "鲤鱼", "三文鱼", "金枪鱼"),
    "pizza": ("披萨", "比萨", "匹萨", "比萨饼"),
    "bus": ("公交车", "公共汽车", "公交", "巴士", "大巴"),
    "star": ("星星", "星", "五角星"),
    "ball": ("足球", "球"),
    "penguin": ("企鹅",),
    "watermelon": ("西瓜",),
    "airplane": ("飞机", "客机"),
    "cactus": ("仙人掌", "仙人球"),
    "castle": ("城堡", "古堡"),
    "octopus": ("章鱼", "八爪鱼", "鱿鱼"),  # the atlas has squid as a synonym of octopus
    "strawberry": ("草莓",),
    "sailboat": ("帆船",),
    "cloud": ("云", "云朵", "白云", "乌云"),
    "balloon": ("气球",),
    "butterfly": ("蝴蝶",),
    "carrot": ("胡萝卜", "红萝卜"),
    "bicycle": ("自行车", "单车", "脚踏车"),
    "rainbow": ("彩虹",),
    "key": ("钥匙",),
    "dog": ("狗", "小狗", "狗狗"),
    "donut": ("甜甜圈",),
    "train": ("火车", "列车", "蒸汽火车", "蒸汽机车"),
    "snowflake": ("雪花",),
    "gift": ("礼物", "礼盒", "礼品"),
    "pig": ("猪", "小猪", "猪猪"),
    "burger": ("汉堡", "汉堡包"),
    "helicopter": ("直升机", "直升飞机"),
    "fire": ("火", "火焰", "火苗"),
    "crown": ("皇冠", "王冠"),
    "panda": ("熊猫", "大熊猫"),
    "cherry": ("樱桃", "车厘子"),
    "truck": ("卡车", "货车"),
    "tulip": ("郁金香",),
    "guitar": ("吉他", "电吉他"),
    "turtle": ("乌龟", "海龟", "龟"),
    "lemon": ("柠檬",),
    "ship": ("轮船", "船", "邮轮", "游轮"),
    "moon": ("月亮", "月牙", "弯月", "新月"),
    "bell": ("铃铛", "铃"),
    "whale": ("鲸鱼", "鲸"),
    "broccoli": ("西兰花", "西蓝花"),
    "tractor": ("拖拉机",),
    "lightning": ("闪电",),
    "trophy": ("奖杯",),
    "snail": ("蜗牛",),
    "pineapple": ("菠萝", "凤梨"),
    "taxi": ("出租车", "计程车"),
    "palm tree": ("棕榈树", "椰子树", "椰树", "棕榈"),
    "umbrella": ("雨伞", "伞", "阳伞"),
    "chicken": ("鸡", "母鸡", "公鸡", "小鸡"),
    "mushroom": ("蘑菇",),
    "ambulance": ("救护车",),
    "sunflower": ("向日葵",),
    "lightbulb": ("灯泡", "电灯泡"),
    "unicorn": ("独角兽",),
    "cake": ("蛋糕", "生日蛋糕"),
    "firetruck": ("消防车", "救火车"),
    "rose": ("玫瑰", "玫瑰花"),
    "book": ("书", "书本", "书籍"),
    "elephant": ("大象",),
    "ice cream": ("冰淇淋", "冰激凌", "冰激淋", "雪糕", "甜筒"),
    "motorcycle": ("摩托车", "摩托"),
    "volcano": ("火山",),
    "clock": ("闹钟", "时钟", "钟表"),
    "bee": ("蜜蜂", "蜂"),
    "croissant": ("牛角包", "可颂", "羊角面包"),
    "racecar": ("赛车",),
    "maple leaf": ("枫叶",),
    "gem": ("宝石", "钻石"),
    "monkey": ("猴子", "猴", "小猴"),
    "avocado": ("牛油果", "鳄梨"),
    "police car": ("警车",),
    "clover": ("四叶草", "三叶草", "幸运草"),
    "teddy bear": ("泰迪熊", "玩具熊"),
    "ladybug": ("瓢虫", "七星瓢虫"),
    "cheese": ("奶酪", "芝士", "干酪"),
    "ufo": ("飞碟", "不明飞行物"),
    "wave": ("海浪", "浪花", "波浪", "浪"),
    "robot": ("机器人",),
    "fox": ("狐狸",),
    "corn": ("玉米",),
    "scooter": ("滑板车",),
    "snowman": ("雪人",),
    "ghost": ("幽灵", "鬼", "鬼魂"),
    "crab": ("螃蟹", "蟹"),
    "tomato": ("西红柿", "番茄"),
    "canoe": ("独木舟", "皮划艇"),
    "earth": ("地球", "星球"),  # the atlas has planet as a synonym of earth
    "anchor": ("锚", "船锚"),
    "owl": ("猫头鹰",),
    "eggplant": ("茄子",),
    "tram": ("有轨电车", "电车"),
    "mountain": ("山", "高山", "山峰"),
    "hammer": ("锤子", "榔头", "锤"),
    "rabbit": ("兔子", "兔", "小兔", "小兔子", "白兔", "小白兔"),
    "cookie": ("饼干", "曲奇"),
    "lollipop": ("棒棒糖",),
    "tent": ("帐篷",),
    "dolphin": ("海豚",),
    "pear": ("梨", "梨子"),
    "drum": ("鼓",),
    "lion": ("狮子", "狮", "母狮"),
    "cupcake": ("纸杯蛋糕", "杯子蛋糕"),
    "camera": ("相机", "照相机"),
    "shark": ("鲨鱼", "鲨"),
    "pretzel": ("椒盐脆饼", "椒盐卷饼", "扭结饼"),
    "television": ("电视", "电视机"),
    "giraffe": ("长颈鹿",),
    "hot pepper": ("辣椒", "红辣椒"),
    "dice": ("骰子",),
    "koala": ("考拉", "树袋熊"),
    "coconut": ("椰子",),
    "magnet": ("磁铁", "吸铁石", "磁石"),
    "alien": ("外星人",),
}
# Background colour (``model.data.vocab.BACKGROUNDS``) -> its words.
COLOURS: dict[str, tuple[str, ...]] = {
    "red": ("红色", "红"),
    "orange": ("橙色", "橘色", "橙"),
    "yellow": ("黄色", "黄"),
    "green": ("绿色", "绿"),
    "blue": ("蓝色", "蓝"),
    "purple": ("紫色", "紫"),
    "pink": ("粉色", "粉红色", "粉红", "粉"),
    "white": ("白色", "白"),
    "black": ("黑色", "黑"),
    "gray": ("灰色", "灰"),
}
# Position (``model.data.vocab.POSITIONS``) -> its words.
POSITIONS: dict[str, tuple[str, ...]] = {
    "left": ("左边", "左侧", "左面", "左方", "左部", "左半边", "左半部", "左半部分", "靠左", "偏左"),
    "right": ("右边", "右侧", "右面", "右方", "右部", "右半边", "右半部", "右半部分", "靠右", "偏右"),
    "top": ("上面", "上边", "上方", "上部", "顶部", "顶端", "上端", "上半部", "上半部分", "上半边", "顶上"),
    "bottom": ("下面", "下边", "下方", "下部", "底部", "底端", "下端", "下半部", "下半部分", "下半边", "底下"),
    "centre": ("中间", "中央", "中心", "正中", "正中间", "正中央", "中部", "居中"),
}
# Size (``model.data.vocab.SIZES``) -> its words.
SIZES: dict[str, tuple[str, ...]] = {
    "small": ("小", "小型", "迷你"),
    "medium": ("中等", "中等大小", "中号", "中型"),
    "large": ("大", "大型", "巨大", "大号"),
}
# Style (``model.data.styles.STYLES``) -> its words.
STYLES: dict[str, tuple[str, ...]] = {
    "flat": ("扁平", "扁平化", "扁平风", "扁平风格"),  # 扁平风格 too, or the longest match cuts it 扁平风 + 格
    "outline sketch": ("线稿", "素描", "简笔画", "线条画", "轮廓", "轮廓画", "铅笔画", "铅笔素描", "勾线"),
    "pixel art": ("像素", "像素画", "像素风", "像素风格", "像素艺术", "8位"),
    "soft watercolour": ("水彩", "水彩画", "柔和水彩"),
    "night": ("夜晚", "夜间", "夜景", "夜里", "晚上", "星夜", "星空", "夜空", "黑夜", "夜"),
    "sticker": ("贴纸", "贴画"),
}
NUMERALS: dict[str, int] = {
    "一": 1, "二": 2, "两": 2, "俩": 2, "三": 3, "仨": 3,
    "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10,
}  # fmt: skip
PAIRS = ("一对", "一双")  # counts of two without a numeral
MEASURE_WORDS = "只个颗朵辆架条张棵艘座把块片根本盏台头匹枚位份杯串粒顶支面间栋轮弯道团尾株枝件部幅盒瓣"
BACKGROUND_WORDS = ("背景", "背景色", "背景颜色", "底色", "底")
AT_WORDS = ("在", "位于", "处于", "放在", "摆在")  # "猫在左边": the position after them is the object's before
# "On" or "in" something (背景上, 画面中): read past like fillers, never as a position.
LOCATIVES = ("上", "之上", "中", "之中", "里", "里面", "内")
ON_BACKGROUND = ("上面", "上边")  # the top, except right after a background or colour (蓝色背景上面: on it)
FILLERS = (
    "的", "地", "有", "和", "与", "跟", "及", "以及", "还有", "并且", "同时", "一起", "是", "为", "作为", "以", "用",
    "很", "非常", "画", "画出", "绘制", "生成", "请", "给我", "我要", "想要", "要", "图", "图片", "画面", "照片",
    "图像", "场景", "插画", "插图", "一张图", "一张图片", "一张照片", "一张画", "一幅图", "一幅画", "一幅图片",
    "风格", "画风", "样式", "表情", "表情符号", "图标",
)  # fmt: skip
FALSE_FRIENDS = (
    "火鸡", "火星", "火腿", "火锅", "火柴", "烟火", "热狗", "鸡蛋", "黄瓜", "橙子", "橘子", "白天", "白菜", "黑板",
    "红绿灯", "山羊", "海星", "行星", "鳄鱼", "墨鱼", "篮球", "排球", "网球", "棒球", "雪球", "书包", "太阳花",
    "一些", "一群", "左上", "右上", "左下", "右下", "左上角", "右上角", "左下角", "右下角",
)  # fmt: skip
CLAUSE_ENDS = "，,。.；;！!？?、"  # and any white space


class Kind(Enum):
    """What a piece of a Chinese prompt is."""

    EMOJI = "emoji"
    COLOUR = "colour"
    BACKGROUND = "background"
    POSITION = "position"
    SIZE = "size"
    COUNT = "count"
    STYLE = "style"
    AT = "at"
    FILLER = "filler"
    CLAUSE_END = "clause end"
    UNREAD = "unread"


class Token(NamedTuple):
    """One piece of the prompt: its kind, what it means (an emoji name, a colour, a count ...) and where it is."""

    kind: Kind
    value: str | int | None
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class ChineseTranslation:
    """A Chinese prompt read with the dictionary: the English caption and what could not be used."""

    prompt: str
    text: str  # in the training captions' grammar; "" when nothing could be read
    left_out: tuple[str, ...]  # pieces of the prompt the translation does not carry, in order
    names_background: bool  # the prompt speaks of a background, even one whose colour could not be read

    @property
    def english(self) -> str:
        """What the model reads: the translation, or the prompt as typed when none of it could be read."""
        return self.text or self.prompt


@dataclass
class _Object:
    name: str
    count: int
    size: str | None
    position: str | None = None


def script(char: str) -> str:
    """The script of a letter by its Unicode name ("LATIN", "CJK", "CYRILLIC", "HIRAGANA" ...)."""
    return unicodedata.name(char, "").removeprefix("FULLWIDTH ").removeprefix("HALFWIDTH ").split(" ")[0]


def is_chinese(text: str) -> bool:
    """Han characters without kana or hangul: Japanese and Korean use Han too, but this dictionary is Chinese."""
    scripts = {script(c) for c in text if c.isalpha()}
    return "CJK" in scripts and not scripts & {"HIRAGANA", "KATAKANA", "KATAKANA-HIRAGANA", "HANGUL"}


@cache
def lexicon() -> dict[str, tuple[Kind, str | int | None]]:
    """Every word of the dictionary -> its kind and meaning; an atlas emoji character is a word for its emoji."""
    entries: list[tuple[str, Kind, str | int | None]] = [
        *((word, Kind.EMOJI, name) for name, words in EMOJI.items() for word in words),
        # Marks such as the emoji variation selector are fillers, so an emoji is its base characters.
        *(("".join(c for c in info.char if unicodedata.category(c) != "Mn"), Kind.EMOJI, info.name)
          for info in load_atlas().emoji),
        *((word, Kind.COLOUR, colour) for colour, words in COLOURS.items() for word in words),
        *((word, Kind.POSITION, position) for position, words in POSITIONS.items() for word in words),
        *((word, Kind.SIZE, size) for size, words in SIZES.items() for word in words),
        *((word, Kind.STYLE, style) for style, words in STYLES.items() for word in words),
        *((word, Kind.COUNT, 2) for word in PAIRS),
        *((word, Kind.BACKGROUND, None) for word in BACKGROUND_WORDS),
        *((word, Kind.AT, None) for word in AT_WORDS),
        *((word, Kind.FILLER, None) for word in (*LOCATIVES, *FILLERS)),
        *((word, Kind.UNREAD, None) for word in FALSE_FRIENDS),
    ]  # fmt: skip
    words: dict[str, tuple[Kind, str | int | None]] = {}
    for word, kind, value in entries:
        if word in words:
            raise ValueError(f"The Chinese dictionary defines {word!r} twice: one word must have one meaning.")
        words[word] = (kind, value)
    return words


_COUNT = re.compile(rf"([{''.join(NUMERALS)}]|[1-9１-９]\d*)([{MEASURE_WORDS}])?")
_LATIN_WORD = re.compile(r"[A-Za-z]+")


def tokens(text: str) -> list[Token]:
    """``text`` cut into dictionary words, longest first (西红柿 is a tomato, not red); a count with its measure
    word is one token, and a dictionary word as long wins over it (8位 is "8-bit", not eight of something)."""
    words = lexicon()
    longest = max(map(len, words))
    found: list[Token] = []
    i = 0
    while i < len(text):
        word = next(
            (text[i : i + n] for n in range(min(longest, len(text) - i), 0, -1) if text[i : i + n] in words), ""
        )
        count = _COUNT.match(text, i)
        latin = _LATIN_WORD.match(text, i)
        if count and count.end() - i > len(word):
            number = NUMERALS.get(count[1]) or int(count[1])
            token = Token(Kind.COUNT, number, i, count.end(), count[0])
        elif word:
            token = Token(*words[word], i, i + len(word), word)
        elif latin:
            token = Token(Kind.UNREAD, None, i, latin.end(), latin[0])
        else:
            char = text[i]
            if char in CLAUSE_ENDS or char.isspace():
                kind = Kind.CLAUSE_END
            elif char.isalnum() or unicodedata.category(char) == "So":  # a letter, digit or emoji it cannot read
                kind = Kind.UNREAD
            else:
                kind = Kind.FILLER
            token = Token(kind, None, i, i + 1, char)
        if token.kind is Kind.UNREAD and found and found[-1].kind is Kind.UNREAD:  # one unknown word: 宇航员
            last = found.pop()
            token = last._replace(end=token.end, text=last.text + token.text)
        found.append(token)
        i = token.end
    return found


def translate_chinese(prompt: str) -> ChineseTranslation | None:
    """``prompt`` in the captions' English ("a cat on the left on a blue background"), or None if not Chinese.

    Counts, sizes and a position before an emoji belong to it (左边有一只猫); a position after one belongs to it
    when 在 stands between or no other emoji follows in the clause (猫在左边, 两个苹果在右边). A colour next to a
    background word is the background (蓝色背景, 背景是蓝色的); one before an emoji is left out, as scenes never
    recolour an emoji; a lone one is the background.
    """
    if not is_chinese(prompt):
        return None
    pieces = tokens(prompt)
    # An unknown word before 的, a size or an emoji describes it (两只可爱的猫): the count waits for the emoji.
    modifiers = {
        t.start
        for t, after in zip(pieces, pieces[1:])
        if t.kind is Kind.UNREAD and (after.text == "的" or after.kind in (Kind.SIZE, Kind.EMOJI))
    }
    # Fillers carry no meaning of their own, so every rule below looks past them.
    content = [t for t in pieces if t.kind is not Kind.FILLER]
    left_out: list[Token] = []
    background = _background(content, left_out)
    objects: list[_Object] = []
    current: _Object | None = None
    count: Token | None = None  # count, size and position tokens wait for their emoji
    size: Token | None = None
    position: Token | None = None
    style: str | None = None
    for k, token in enumerate(content):
        before = content[k - 1].kind if k else None
        if token.kind is Kind.COUNT:
            left_out += [count] if count else []
            count = token
        elif token.kind is Kind.SIZE:
            left_out += [size] if size and size.value != token.value else []
            size = token
        elif token.kind is Kind.EMOJI:
            named = next((o for o in objects if o.name == token.value), None)
            if named is None or count or size:  # a bare repeat (两只猫，猫在左边) is the same object
                named = _Object(str(token.value), int(count.value) if count else 1, str(size.value) if size else None)
                objects.append(named)
            count = size = None
            current = named
            if position and current.position is None:
                current.position, position = str(position.value), None
        elif token.kind is Kind.POSITION:
            if token.text in ON_BACKGROUND and before in (Kind.BACKGROUND, Kind.COLOUR):
                continue
            if current and current.position is None and (before is Kind.AT or not _emoji_ahead(content, k)):
                current.position = str(token.value)
            else:
                left_out += [position] if position else []
                position = token
        elif token.kind is Kind.STYLE:
            if style is None:
                style = str(token.value)
            elif token.value != style:
                left_out.append(token)
        elif token.kind is Kind.UNREAD:
            left_out.append(token)
            if token.start not in modifiers:
                left_out += [t for t in (count, size) if t]
                count = size = None
    left_out += [t for t in (count, size, position) if t]
    return ChineseTranslation(
        prompt=prompt,
        text=_english(objects, background, style),
        left_out=_pieces(prompt, left_out),
        names_background=any(t.kind is Kind.BACKGROUND for t in content),
    )


def in_english(prompt: str) -> str:
    """What the model should read for ``prompt``: a Chinese prompt's translation, any other prompt as typed."""
    translation = translate_chinese(prompt)
    return translation.english if translation else prompt


def _emoji_ahead(content: list[Token], k: int) -> bool:
    """Whether an emoji follows token ``k`` before the clause ends."""
    for token in content[k + 1 :]:
        if token.kind is Kind.CLAUSE_END:
            return False
        if token.kind is Kind.EMOJI:
            return True
    return False


def _background(content: list[Token], left_out: list[Token]) -> str | None:
    """The background colour; the prompt's other colours go to ``left_out``."""
    bound, loose = [], []
    for k, token in enumerate(content):
        if token.kind is not Kind.COLOUR:
            continue
        neighbours = {content[k - 1].kind if k else None, content[k + 1].kind if k + 1 < len(content) else None}
        if Kind.BACKGROUND in neighbours:
            bound.append(token)
        elif content[k + 1 :] and content[k + 1].kind in (Kind.EMOJI, Kind.SIZE):
            left_out.append(token)
        else:
            loose.append(token)
    colours = bound + loose
    if not colours:
        return None
    left_out += [t for t in colours if t.value != colours[0].value]
    return str(colours[0].value)


def _english(objects: list[_Object], background: str | None, style: str | None) -> str:
    """The caption: "{objects} on a {colour} background, {style phrase}", as the first caption template has it."""
    phrases = [_object_phrase(o) for o in objects]
    text = f"{', '.join(phrases[:-1])} and {phrases[-1]}" if len(phrases) > 1 else "".join(phrases)
    if background:
        text = f"{text} {BACKGROUND_PHRASES[0].format(c=background)}" if text else f"a {background} background"
    if style:
        text = f"{text}, {STYLE_SUFFIXES[style][0]}" if text else STYLE_SUFFIXES[style][0]
    return fix_articles(text)


def _object_phrase(obj: _Object) -> str:
    noun = load_atlas().by_name[obj.name].plural if obj.count > 1 else obj.name
    if obj.size:
        noun = f"{SIZE_WORDS[obj.size][0]} {noun}"
    if obj.count == 1:
        number = indefinite_article(noun)
    else:
        number = COUNT_WORDS[obj.count][0] if obj.count in COUNT_WORDS else str(obj.count)
    return f"{number} {noun} {POSITION_PHRASES[obj.position][0]}" if obj.position else f"{number} {noun}"


def _pieces(prompt: str, left_out: list[Token]) -> tuple[str, ...]:
    """The left-out tokens as the prompt's words: neighbours joined (三个 + 宇航员 -> 三个宇航员), repeats once."""
    spans: list[list[int]] = []
    for token in sorted(left_out, key=lambda t: t.start):
        if spans and spans[-1][1] == token.start:
            spans[-1][1] = token.end
        else:
            spans.append([token.start, token.end])
    return tuple(dict.fromkeys(prompt[start:end] for start, end in spans))
