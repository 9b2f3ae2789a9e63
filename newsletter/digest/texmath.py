"""Turn the bits of TeX that appear in paper titles into plain Unicode text."""

from __future__ import annotations

import re

# Escaped braces and dollars stand in as private-use characters until the unescaped ones
# (grouping and math mode) are dropped, so `\{x\}` and `\$5` stay literal.
_OPEN, _CLOSE, _DOLLAR = "\ue000", "\ue001", "\ue002"
_LITERALS = str.maketrans({_OPEN: "{", _CLOSE: "}", _DOLLAR: "$"})

_COMMANDS = {
    "times": "×",
    "cdot": "·",
    "pm": "±",
    "mp": "∓",
    "div": "÷",
    "leq": "≤",
    "le": "≤",
    "geq": "≥",
    "ge": "≥",
    "neq": "≠",
    "ne": "≠",
    "approx": "≈",
    "sim": "∼",
    "infty": "∞",
    "rightarrow": "→",
    "to": "→",
    "leftarrow": "←",
    "leftrightarrow": "↔",
    "Rightarrow": "⇒",
    "alpha": "α",
    "beta": "β",
    "gamma": "γ",
    "delta": "δ",
    "epsilon": "ε",
    "varepsilon": "ε",
    "zeta": "ζ",
    "eta": "η",
    "theta": "θ",
    "iota": "ι",
    "kappa": "κ",
    "lambda": "λ",
    "mu": "μ",
    "nu": "ν",
    "xi": "ξ",
    "pi": "π",
    "rho": "ρ",
    "sigma": "σ",
    "tau": "τ",
    "phi": "φ",
    "varphi": "φ",
    "chi": "χ",
    "psi": "ψ",
    "omega": "ω",
    "Gamma": "Γ",
    "Delta": "Δ",
    "Theta": "Θ",
    "Lambda": "Λ",
    "Pi": "Π",
    "Sigma": "Σ",
    "Phi": "Φ",
    "Psi": "Ψ",
    "Omega": "Ω",
    "circ": "∘",
    "star": "⋆",
    "ast": "∗",
    "dagger": "†",
    "ell": "ℓ",
    "partial": "∂",
    "nabla": "∇",
    "sum": "∑",
    "prod": "∏",
    "int": "∫",
    "in": "∈",
    "cup": "∪",
    "cap": "∩",
    "emptyset": "∅",
    "checkmark": "✓",
    "dots": "…",
    "ldots": "…",
    "cdots": "⋯",
    "%": "%",
    "&": "&",
    "$": _DOLLAR,
    "#": "#",
    "_": "_",
    "{": _OPEN,
    "}": _CLOSE,
    " ": " ",
    ",": " ",
    ";": " ",
    "!": "",
    "quad": " ",
}
_SUPER = str.maketrans("0123456789+-=()nij", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿⁱʲ")
_SUB = str.maketrans("0123456789+-=()", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎")
_SUPER_OK = set("0123456789+-=()nij")
_SUB_OK = set("0123456789+-=()")

_WRAPPERS = re.compile(
    r"\\(?:mathbf|mathrm|mathit|mathcal|mathbb|textbf|textit|text|emph|texttt|operatorname|boldsymbol)\{([^{}]*)\}"
)
_COMMAND = re.compile(r"\\([A-Za-z]+|[%&$#_{} ,;!])")
_SCRIPT = re.compile(r"([\^_])(?:\{([^{}]*)\}|([A-Za-z0-9+\-=()]))")
# $...$ as Markdown math reads it (pandoc's rule): no space just inside either dollar, and no
# digit right after the closing one, so "$5 to $10" is two prices, not a formula.
_MATH = re.compile(r"\$(?=\S)([^$]*?\S)\$(?!\d)")


def _script(match: re.Match[str]) -> str:
    mark, braced, single = match.group(1), match.group(2), match.group(3)
    body = braced if braced is not None else single
    allowed, table = (_SUPER_OK, _SUPER) if mark == "^" else (_SUB_OK, _SUB)
    if body and all(ch in allowed for ch in body):
        return body.translate(table)
    return match.group(0) if braced is None else f"{mark}{body}"


def _command(match: re.Match[str]) -> str:
    name = match.group(1)
    return _COMMANDS.get(name, match.group(0))


def plain_title(title: str) -> str:
    """Return `title` with TeX markup rendered as Unicode: `LLM$\\times$MapReduce` -> `LLM×MapReduce`."""
    if "\\" not in title and "$" not in title and "^" not in title and "_{" not in title:
        return title
    # Dollars and braces are TeX's only beside TeX: a command, a script or a math span as
    # Markdown reads one. Without, they are the title's own ("From $5 to $10", "{{ x }}").
    tex = "\\" in title or "^" in title or "_{" in title or _MATH.search(title) is not None
    text = title
    for _ in range(3):  # nested wrappers such as \mathbf{\text{x}}
        text = _WRAPPERS.sub(r"\1", text)
    text = _COMMAND.sub(_command, text)
    text = _SCRIPT.sub(_script, text)
    if tex:
        if text.count("$") >= 2:  # a lone "$" is a dollar sign, not math mode
            text = text.replace("$", "")
        text = re.sub(r"[{}]", "", text)
    return re.sub(r"\s+", " ", text.translate(_LITERALS)).strip()
