"""Messages the handlers compute (status lines, thanks, toasts, progress), in the rater's language.

``gr.I18n`` translates the page's static text by the browser's locale; text a handler builds at run time is
chosen here from the same locale, read from the request's ``Accept-Language`` header.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "status": "**{n} image{s}** in {seconds:.1f} s from “{text}” · seed {seed} · {sampler} {steps} steps · "
        "model `{model}` · rate each image with 👍 or 👎",
        "best_of_status": " · **best of {n}**: a reward model learned from raters' votes picked these {shown} of "
        "{drawn} images",
        "pair_status": "Seeds {left} (left) and {right} (right): which fits the prompt better?",
        "pair_thanks": "Thanks! You chose **{choice}**. The next pair is on its way…",
        "choice_left": "the left image",
        "choice_tie": "a tie",
        "choice_both_bad": "both bad",
        "choice_right": "the right image",
        "arena_status": "Seed {seed} · “{text}” · which image fits the prompt better?",
        "arena_reveal": "You chose **{choice}**. Model A was `{a}`, model B was `{b}`. "
        "Battle again for the next pair.",
        "arena_choice_left": "model A",
        "arena_choice_right": "model B",
        "leaderboard_summary": "**{battles}** judged battle{battles_s} between **{models}** version{models_s}",
        "comment_saved": "Comment saved.",
        "vote_first": "Choose 👍 or 👎 first; the comment is saved with your vote.",
        "vote_not_sent": "The vote did not reach the server; check the connection and click again.",
        "cards_stale": "These are the earlier images; wait for the new ones to vote.",
        "rate_progress": "You have judged **{answered}** of {items} items · the campaign has **{complete}** of "
        "{wanted_items} items with {k} answers",
        "rate_done": "**You have judged every item of this campaign. Thank you!**",
        "rate_none": "No campaign is open right now.",
        "rate_text": "Text: “{text}”",
        "rate_pair_text": "Text: “{text}” · which image fits it better?",
        "totals": "**{votes}** vote{votes_s} · **{comparisons}** comparison{comparisons_s} · **{images}** "
        "image{images_s} · **{raters}** rater{raters_s}",
        "agreement_none": "**{name}**: no {items} judged by two raters yet",
        "agreement_same": "**{name}**: every rater gave the same answer on {n} {items}; α is undefined",
        "agreement_alpha": "**{name}**: α = {alpha:.2f} (95% interval {low:.2f} to {high:.2f}) on {n} {items} "
        "judged by {raters} raters",
        "agreement_flagged": "**{flagged}** rater{flagged_s} flagged for review",
        "votes_name": "Votes",
        "comparisons_name": "Comparisons",
        "images_word": "image{s}",
        "pairs_word": "pair{s}",
        "campaign_line": "**{name}** ({kind}): {complete} of {items} items have {wanted} answers · {low} to {high} "
        "answers per item (median {median:g}) · {agreement} · {flagged} rater{flagged_s} flagged",
        "campaign_alpha": "α = {alpha:.2f} (95% interval {low:.2f} to {high:.2f})",
        "campaign_no_alpha": "α not measurable yet",
    },
    "zh": {
        "status": "**{n} 张图像**，用时 {seconds:.1f} 秒，生成自“{text}” · 种子 {seed} · {sampler} {steps} 步 · "
        "模型 `{model}` · 请为每张图像点 👍 或 👎",
        "best_of_status": " · **{n} 选 1**：由评分者投票训练的奖励模型从 {drawn} 张中挑选了这 {shown} 张",
        "pair_status": "种子 {left}（左）和 {right}（右）：哪一张更符合提示词？",
        "pair_thanks": "谢谢！你选择了**{choice}**。下一组马上就来…",
        "choice_left": "左边的图像",
        "choice_tie": "一样好",
        "choice_both_bad": "都不好",
        "choice_right": "右边的图像",
        "arena_status": "种子 {seed} · “{text}” · 哪一张更符合提示词？",
        "arena_reveal": "你选择了**{choice}**。模型 A 是 `{a}`，模型 B 是 `{b}`。再点“对战”开始下一组。",
        "arena_choice_left": "模型 A",
        "arena_choice_right": "模型 B",
        "leaderboard_summary": "**{models}** 个版本之间已评判 **{battles}** 场对战",
        "comment_saved": "评论已保存。",
        "vote_first": "请先点 👍 或 👎，评论会随投票一起保存。",
        "vote_not_sent": "投票没有送达服务器；请检查网络后再点一次。",
        "cards_stale": "这些是之前的图像；请等新图像出来后再投票。",
        "rate_progress": "你已评价 **{answered}** / {items} 项 · 本任务已有 **{complete}** / {wanted_items} "
        "项收到 {k} 个评价",
        "rate_done": "**你已评价完本任务的全部条目，谢谢！**",
        "rate_none": "目前没有进行中的评分任务。",
        "rate_text": "描述：“{text}”",
        "rate_pair_text": "描述：“{text}” · 哪一张更符合？",
        "totals": "**{votes}** 个投票 · **{comparisons}** 次对比 · **{images}** 张图像 · **{raters}** 位评价者",
        "agreement_none": "**{name}**：还没有被两位评价者都评判过的{items}",
        "agreement_same": "**{name}**：所有评价者对 {n} 个{items}的回答都相同，α 无定义",
        "agreement_alpha": "**{name}**：α = {alpha:.2f}（95% 区间 {low:.2f} 至 {high:.2f}），"
        "基于 {raters} 位评价者评判的 {n} 个{items}",
        "agreement_flagged": "**{flagged}** 位评价者被标记待审",
        "votes_name": "投票",
        "comparisons_name": "对比",
        "images_word": "图像",
        "pairs_word": "图像对",
        "campaign_line": "**{name}**（{kind}）：{items} 项中有 {complete} 项已收到 {wanted} 个回答 · "
        "每项 {low} 至 {high} 个回答（中位数 {median:g}）· {agreement} · {flagged} 位评价者被标记",
        "campaign_alpha": "α = {alpha:.2f}（95% 区间 {low:.2f} 至 {high:.2f}）",
        "campaign_no_alpha": "α 暂无法计算",
    },
}
DEFAULT_LANGUAGE = "en"

# The dashboard tables' column names as the page shows them; the JSON API keeps the data's own names.
COLUMN_LABELS: dict[str, dict[str, str]] = {
    "en": {
        "campaign": "campaign", "rater_id": "rater", "account": "account", "shared_images": "shared images",
        "vote_agreement": "vote agreement", "shared_pairs": "shared pairs", "pair_agreement": "pair agreement",
        "agreement": "agreement", "chance": "chance", "flagged": "flagged", "answers": "answers",
        "gold_answered": "gold answered", "gold_correct": "gold correct", "gold_accuracy": "gold accuracy",
        "median_seconds": "median seconds", "same_button_share": "same-button share", "reasons": "reasons",
    },
    "zh": {
        "campaign": "评分任务", "rater_id": "评价者", "account": "账号", "shared_images": "共同图像数",
        "vote_agreement": "投票一致率", "shared_pairs": "共同对比数", "pair_agreement": "对比一致率",
        "agreement": "一致率", "chance": "随机一致率", "flagged": "已标记", "answers": "回答数",
        "gold_answered": "已答金标题", "gold_correct": "答对金标题", "gold_accuracy": "金标准准确率",
        "median_seconds": "中位用时（秒）", "same_button_share": "同一按钮占比", "reasons": "原因",
    },
}  # fmt: skip


PLOT_LABELS: dict[str, dict[str, str]] = {  # the dashboard plots' axis and legend titles, and the vote values
    "en": {
        "day": "day", "votes": "votes", "vote": "vote", "likes": "likes", "dislikes": "dislikes",
        "model": "model version", "category": "category", "like_rate": "like-rate", "bar_votes": "{n} vote{s}",
    },
    "zh": {
        "day": "日期", "votes": "票数", "vote": "投票", "likes": "赞", "dislikes": "踩",
        "model": "模型版本", "category": "类别", "like_rate": "好评率", "bar_votes": "{n} 票",
    },
}  # fmt: skip
VOTE_COLOURS = {"likes": "#22c55e", "dislikes": "#ef4444"}


def language(request: gr.Request | None) -> str:
    """The first language of the browser's ``Accept-Language`` that the demo speaks, else English."""
    header = (getattr(request, "headers", None) or {}).get("accept-language", "") if request is not None else ""
    for part in header.split(","):
        code = part.split(";")[0].strip().lower().split("-")[0]
        if code in MESSAGES:
            return code
    return DEFAULT_LANGUAGE


def say(request: gr.Request | None, key: str, **values: Any) -> str:
    """Message ``key`` in the request's language, filled with ``values``."""
    return say_in(language(request), key, **values)


def say_in(lang: str, key: str, **values: Any) -> str:
    """Message ``key`` in ``lang``, filled with ``values``; ``plural(n)`` gives English its plural ``s``."""
    return MESSAGES[lang][key].format(**values)


def headed(frame: pd.DataFrame, lang: str) -> pd.DataFrame:
    """``frame`` with its column names in ``lang`` (``COLUMN_LABELS``), for a table on the page."""
    return frame.rename(columns=COLUMN_LABELS[lang])


def plural(n: int) -> str:
    return "" if n == 1 else "s"
