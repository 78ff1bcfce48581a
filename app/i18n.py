"""UI text in English and Chinese (the original RAPHAEL demo, Miaohua, served Chinese users).

``gr.I18n`` translates static text in the browser by its locale; messages handlers compute (status lines,
thanks, toasts, progress, totals) follow the same locale through ``app.messages``; error messages stay English.
"""

from __future__ import annotations

import gradio as gr

from model.prompts.trained_domain import TrainedDomain

EN: dict[str, str] = {
    "title": "# 🎨 RAPHAEL-tiny: text to image through a mixture of diffusion paths",
    "subtitle": "Describe an emoji scene, generate, and rate **every** image with 👍 or 👎. "
    "Your ratings train the next model version.",
    "tab_generate": "Generate",
    "tab_compare": "Compare",
    "tab_rate": "Rate",
    "tab_arena": "Arena",
    "arena_intro": "Two model versions, drawn at random and kept anonymous, draw your prompt with the same seed "
    "and settings (those of the Generate tab). Judge which image fits the prompt better; the names are shown after "
    "your vote. Keys: ← A, → B, T tie, B both bad.",
    "arena_closed": "The arena needs at least two model versions; this server serves one. Start it with more "
    "(`--model` twice, or `--versions DIR`).",
    "battle": "⚔️ Battle",
    "model_a": "Model A",
    "model_b": "Model B",
    "arena_outcome_left": "👈 A is better",
    "arena_outcome_right": "B is better 👉",
    "tab_leaderboard": "Leaderboard",
    "leaderboard_help": "Bradley-Terry ratings from the arena's judged battles, on an Elo-like scale (400 points: "
    "10-to-1 odds), with 95% bootstrap intervals; a tie or 'both bad' counts half a win to each side. "
    "The like-rate is the share of 👍 on the version's images from the Generate tab.",
    "ratings": "Ratings",
    "win_rates": "Win rate of the row's version against the column's (ties count half)",
    "versions": "Versions and their lineage",
    "campaigns": "Rating campaigns",
    "campaign_raters": "Raters of each campaign: gold accuracy, speed, same-button share and why one is flagged",
    "campaign": "Campaign",
    "guidelines": "Guidelines",
    "rate_intro": "Judge the images of a rating campaign, one item after another. Keys: ↑ 👍, ↓ 👎 "
    "(pairs: ← left, → right, T tie, B both bad).",
    "rate_like": "👍 Fits the text",
    "rate_dislike": "👎 Does not fit",
    "tab_dashboard": "Dashboard",
    "tab_about": "About / consent",
    "prompt": "Prompt",
    "prompt_placeholder": "e.g. a cat and a rocket on a blue background",
    "negative_prompt": "Negative prompt",
    "negative_placeholder": "what the image should not show",
    "enhance": "✨ Enhance prompt",
    "style": "Style",
    "enhanced_prompt": "Enhanced prompt (editable; used instead of the prompt when not empty)",
    "generate": "🎨 Generate",
    "settings": "Settings",
    "steps": "Steps",
    "steps_info": "more steps give finer detail",
    "cfg": "CFG scale",
    "cfg_info": "how closely to follow the prompt",
    "seed": "Seed",
    "seed_info": "-1 = random; the same seed and settings give the same images",
    "used_seed": "Seed used",
    "num_images": "Images per prompt",
    "best_of": "Best of",
    "best_of_info": "Draw this many candidates per image; a reward model learned from raters' votes shows the best",
    "aspect": "Aspect ratio (width:height)",
    "sampler": "Sampler",
    "comment_placeholder": "optional comment, Enter to save",
    "results": "Results",
    "originals": "Originals and provenance (PNG with its settings in the text chunk)",
    "originals_gallery": "Native-size images",
    "provenance": "Generation details",
    "history": "Session history (click a run to restore its settings)",
    "examples": "Examples",
    "model_knows": "What this model has learned so far",
    "pair_intro": "Two images of one prompt, side by side. Which fits the prompt better? "
    "Keys: ← left, → right, ↓ or T tie, B both bad, N new pair.",
    "new_pair": "🎲 New pair",
    "left": "Left",
    "right": "Right",
    "outcome_left": "👈 Left is better",
    "outcome_right": "Right is better 👉",
    "outcome_tie": "🤝 Tie",
    "outcome_both_bad": "👎 Both bad",
    "refresh": "🔄 Refresh",
    "votes_over_time": "Votes per day",
    "like_rate_model": "Like-rate per model version",
    "like_rate_category": "Like-rate per category",
    "rater_agreement": "Rater agreement",
    "agreement_help": "Krippendorff's α over images (👍/👎) and pairs judged by at least two raters: 1 is "
    "perfect agreement, 0 is chance. Each rater's *agreement* is how often the others gave the same answer on "
    "the items they share, next to what *chance* would give; raters who mostly disagree are flagged for review.",
    "raters": "Raters who share items with others",
    "admin_key": "Admin key (the host's RAPHAEL_ADMIN_KEY) to see each rater's agreement and flag",
    "consent_short": "By rating you agree that your prompts, images and votes are stored anonymously to "
    "improve the model (see *About / consent*).",
    "about": """## About
RAPHAEL (Xue et al., 2023) routes every text token through its own **space expert** and every
noise level through a **time expert**, a mixture of diffusion paths. This demo serves a tiny
version trained on emoji scenes.

## What is stored, and why
- your prompt, the enhanced and negative prompts, and every setting (seed, steps, CFG, sampler, size);
- the generated images, with their settings in the PNG text chunk;
- your 👍/👎 votes, comments and side-by-side choices, with their time;
- a keyed hash of a random id that one cookie (`raphael_rater`, one year) keeps in this browser, so a
  reload is still you, and a salted hash of your IP address (never the address), only to tell raters
  apart and spot abuse. Clear the cookie to start as a new rater.

No account, no name, no tracking or third-party cookies. The ratings become preference datasets (Pick-a-Pic,
Diffusion-DPO, KTO formats) that fine-tune the next model version, and may be published.
Do not type personal information into prompts or comments.
""",
}

ZH: dict[str, str] = {
    "title": "# 🎨 RAPHAEL-tiny：混合扩散路径的文生图",
    "subtitle": "描述一个表情符号场景，生成图像，并为**每张**图像点 👍 或 👎。你的评价将用于训练下一个模型版本。",
    "tab_generate": "生成",
    "tab_compare": "对比",
    "tab_arena": "竞技场",
    "arena_intro": "随机抽取两个模型版本并隐去名称，用相同的种子和参数（即“生成”页的参数）绘制你的提示词。"
    "请判断哪一张更符合提示词；投票后会显示模型名称。快捷键：← A，→ B，T 一样好，B 都不好。",
    "arena_closed": "竞技场至少需要两个模型版本，本服务只提供一个。"
    "请用更多版本启动（两次 `--model`，或 `--versions 目录`）。",
    "battle": "⚔️ 对战",
    "model_a": "模型 A",
    "model_b": "模型 B",
    "arena_outcome_left": "👈 A 更好",
    "arena_outcome_right": "B 更好 👉",
    "tab_leaderboard": "排行榜",
    "leaderboard_help": "根据竞技场已评判的对战计算的 Bradley-Terry 评分，"
    "采用类 Elo 刻度（相差 400 分即 10 比 1 的胜率比），附 95% bootstrap 置信区间；平局或“都不好”各计半场胜利。"
    "点赞率为该版本在“生成”页图像上获得 👍 的比例。",
    "ratings": "评分",
    "win_rates": "行版本对列版本的胜率（平局计一半）",
    "versions": "各版本及其来源",
    "tab_rate": "评分任务",
    "campaigns": "评分任务",
    "campaign_raters": "各评分任务的评价者：金标准准确率、速度、同一按钮占比及被标记的原因",
    "campaign": "评分任务",
    "guidelines": "评分说明",
    "rate_intro": "逐项评价评分任务中的图像。快捷键：↑ 👍，↓ 👎（成对：← 左，→ 右，T 一样好，B 都不好）。",
    "rate_like": "👍 符合描述",
    "rate_dislike": "👎 不符合",
    "tab_dashboard": "数据面板",
    "tab_about": "关于 / 知情同意",
    "prompt": "提示词",
    "prompt_placeholder": "例如：蓝色背景上的一只猫和一枚火箭",
    "negative_prompt": "反向提示词",
    "negative_placeholder": "图像中不应出现的内容",
    "enhance": "✨ 优化提示词",
    "style": "风格",
    "enhanced_prompt": "优化后的提示词（可编辑；非空时代替原提示词）",
    "generate": "🎨 生成",
    "settings": "参数",
    "steps": "步数",
    "steps_info": "步数越多，细节越精细",
    "cfg": "CFG 引导强度",
    "cfg_info": "生成结果贴合提示词的程度",
    "seed": "随机种子",
    "seed_info": "-1 = 随机；相同的种子与参数生成相同的图像",
    "used_seed": "实际使用的种子",
    "num_images": "每次生成张数",
    "best_of": "多选一",
    "best_of_info": "每张图像先生成这么多候选，由评分者投票训练的奖励模型选出最好的",
    "aspect": "宽高比（宽:高）",
    "sampler": "采样器",
    "comment_placeholder": "可选评论，按回车保存",
    "results": "结果",
    "originals": "原图与生成信息（PNG 文本块中包含全部参数）",
    "originals_gallery": "原始尺寸图像",
    "provenance": "生成详情",
    "history": "本次会话历史（点击恢复参数）",
    "examples": "示例",
    "model_knows": "这个模型目前学会了什么",
    "pair_intro": "同一提示词的两张图像并排展示。哪一张更符合提示词？"
    "快捷键：← 左，→ 右，↓ 或 T 一样好，B 都不好，N 换一对。",
    "new_pair": "🎲 换一组",
    "left": "左",
    "right": "右",
    "outcome_left": "👈 左边更好",
    "outcome_right": "右边更好 👉",
    "outcome_tie": "🤝 一样好",
    "outcome_both_bad": "👎 都不好",
    "refresh": "🔄 刷新",
    "votes_over_time": "每日投票数",
    "like_rate_model": "各模型版本的点赞率",
    "like_rate_category": "各类别的点赞率",
    "rater_agreement": "评价者一致性",
    "agreement_help": "Krippendorff α 基于至少两位评价者评过的图像（👍/👎）与图像对：1 表示完全一致，0 表示随机水平。"
    "每位评价者的 *agreement* 是其他人在共同评过的条目上给出相同答案的比例，*chance* 为随机作答的期望值；"
    "多数情况下与他人不一致的评价者会被标记以供复核。",
    "raters": "与他人有共同条目的评价者",
    "admin_key": "管理员密钥（站点的 RAPHAEL_ADMIN_KEY），用于查看每位评价者的一致性与标记",
    "consent_short": "参与评价即表示你同意我们匿名保存你的提示词、图像与投票，用于改进模型（详见“关于 / 知情同意”）。",
    "about": """## 关于
RAPHAEL（Xue 等，2023）让每个文本词元经过各自的**空间专家**，每个噪声水平经过一个**时间专家**，
即"混合扩散路径"。本演示提供一个在表情符号场景上训练的小型版本。

## 我们保存什么、为什么
- 你的提示词、优化后的提示词与反向提示词，以及全部参数（种子、步数、CFG、采样器、尺寸）；
- 生成的图像，参数写在 PNG 文本块中；
- 你的 👍/👎 投票、评论与对比选择，以及时间；
- 一个 Cookie（`raphael_rater`，有效期一年）在本浏览器中保存的随机 ID 的密钥哈希（刷新页面后仍是你），
  以及 IP 地址的加盐哈希（从不保存地址本身），仅用于区分评价者、发现滥用。清除该 Cookie 即以新评价者身份开始。

无需账号，不收集姓名，不使用跟踪或第三方 Cookie。评价数据会整理为偏好数据集（Pick-a-Pic、Diffusion-DPO、KTO 格式），
用于微调下一个模型版本，并可能公开发布。请不要在提示词或评论中填写个人信息。
""",
}

LANGUAGES = {"en": EN, "zh": ZH}
I18N = gr.I18n(**LANGUAGES)


def page_i18n(domain: TrainedDomain | None) -> gr.I18n:
    """The translations of one page: the static text, plus what its model has learned (``"domain"``).

    The description depends on the bundle, so it joins the translations when the page is launched;
    translations are fixed from then on, as the bundle is.
    """
    if domain is None:
        return I18N
    return gr.I18n(**{lang: {**text, "domain": domain.describe(lang)} for lang, text in LANGUAGES.items()})
