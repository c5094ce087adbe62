"""Diffusion forms (docs/method.md sec. 1), registered by name.

`FORMS[name]` is a `Form` exposing alpha(u), sigma(u), snr(u), u_at_snr(snr),
target(data, noise, u), split(x, pred, u) and step(x, pred, u, u_next).
"""

from __future__ import annotations

from harness.engine.forms.base import Form
from harness.engine.forms.flow import FlowMatching
from harness.engine.forms.vp import VPDiffusion

FORMS: dict[str, Form] = {
    "flow": FlowMatching("flow"),
    "ddim": VPDiffusion("ddim", prediction="epsilon"),
    "ddim-v": VPDiffusion("ddim-v", prediction="v_prediction"),
}


def get_form(form: str | Form) -> Form:
    """Look a form up by name (a `Form` instance passes through)."""
    if isinstance(form, Form):
        return form
    try:
        return FORMS[form]
    except KeyError:
        raise ValueError(f"unknown form {form!r}; choose one of {sorted(FORMS)}") from None


__all__ = ["FORMS", "Form", "FlowMatching", "VPDiffusion", "get_form"]
