"""Inputs whose check is left to the handlers' ``Guard``, so its message names the field.

The browser clamps a typed value into the slider's range, but API clients send what they like, and
Gradio's own check answers ``steps=0`` with "Value 0 is less than minimum value 1.", which does not
say which of the inputs is wrong. ``Guard`` answers it with "The number of steps must be a whole
number from 1 to 150 (got 0)." Choices likewise: Gradio's "Value … is not in the list of choices"
names no field and echoes whatever was sent; ``Guard`` says "Unknown sampler; choose one of …".
Text likewise: Gradio turns a list sent as a prompt into its repr; ``Guard`` says "The prompt must be text."
These components keep the stock frontend and pass the value through unchanged
(``is_template`` is Gradio's own switch for a subclass that renders as its parent); every
handler that takes them validates it. (On import, Gradio writes the event stubs of
these subclasses to ``guarded_inputs.pyi``; git and ruff ignore that file.)
"""

from __future__ import annotations

from typing import Any

import gradio as gr


class GuardedSlider(gr.Slider):
    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return payload


class GuardedNumber(gr.Number):
    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return payload


class GuardedDropdown(gr.Dropdown):
    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return payload


class GuardedRadio(gr.Radio):
    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return payload


class GuardedTextbox(gr.Textbox):
    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return payload
