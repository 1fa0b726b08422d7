"""What of a config value may be shown: credentials in URLs, names and text are masked."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlsplit

MASK = "***"

# Names (split at -, _, . and camelCase humps) that say their value is a credential.
_TOKEN_WORDS = frozenset({
    "token", "key", "apikey", "secret", "signature", "sig", "password", "passwd", "auth",
    "authorization", "credential", "credentials",
})
_TOKEN_ENDINGS = ("token", "secret", "password", "signature")
# Bounded repeats keep scrub linear in the length of whatever a user wrote.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,30}://\S+")
_PAIR = re.compile(r"(?P<name>[^\s=&?#;,]{1,100})=(?P<value>[^\s&#;,]*)")
_USERINFO = re.compile(r"(?<![^\s'\"(])[^\s/@:'\"(]{1,200}:[^\s/@]{1,500}@")
_SCHEME_CREDENTIAL = re.compile(r"\b(Bearer|Basic|Token)\s+\S+", re.IGNORECASE)
_SCRUBBED = 2000  # longer text is cut first: no error shows more than its first 120 characters


def _query_pairs(query: str) -> list[tuple[str, str | None]]:
    pairs: list[tuple[str, str | None]] = []
    for item in query.split("&"):
        name, equals, value = item.partition("=")
        if item:
            pairs.append((name, value if equals else None))
    return pairs


def token_like(name: str) -> bool:
    """Whether a name (a query parameter, a config key) says it holds a credential."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", unquote_plus(name)).lower()
    return any(word in _TOKEN_WORDS or word.endswith(_TOKEN_ENDINGS)
               for word in re.split(r"[-_.\s]+", words))


def secret_name(name: str) -> bool:
    """Whether a config key's value is never shown: a credential, or a `*Env` key, whose value
    should be a variable's name; one that is refused may be the secret itself."""
    return token_like(name) or name.endswith("Env") or name.lower().endswith("_env")


def url_credentials(url: str) -> list[str]:
    """What in a URL is a credential: userinfo (user:password@) and token-like query parameters."""
    parts = urlsplit(url)
    found = ["userinfo (user:password@)"] if "@" in parts.netloc else []
    found += [f"query parameter {name!r}" for name, _ in _query_pairs(parts.query)
              if token_like(name)]
    return found


def redact_url(url: str, *, path: bool = True) -> str:
    """The one way a webhook URL is shown: userinfo, query values and fragment become ***, and so
    does the path unless `path` (a URL from the environment is secret as a whole)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    _userinfo, at, host = parts.netloc.rpartition("@")
    shown = f"{parts.scheme}://{'***@' if at else ''}{host}"
    shown += parts.path if path or not parts.path.strip("/") else "/***"
    if parts.query:
        shown += "?" + "&".join(MASK if value is None else f"{name}={MASK}"
                                for name, value in _query_pairs(parts.query))
    return shown + ("#***" if parts.fragment else "")


def url_secrets(url: str, *, path: bool = True) -> list[str]:
    """The parts of `url` that redact_url hides, longest first, to scrub them from other text."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    pairs = _query_pairs(parts.query)
    userinfo = parts.netloc.rpartition("@")[0]
    hidden = [userinfo, *userinfo.split(":", 1), parts.fragment]
    hidden += [value if value is not None else name for name, value in pairs]
    if not path:
        hidden += [parts.path, *parts.path.split("/")]
    # Shorter pieces (a page number, "hooks") are no secret and would blank unrelated text.
    found = {piece for text in hidden for piece in (text, unquote_plus(text)) if len(piece) >= 6}
    return sorted(found, key=len, reverse=True)


def scrub(text: str) -> str:
    """`text` as it may be shown: every URL redacted as redact_url does, and token-like
    name=value pairs, user:password@ and `Bearer <token>` masked even outside a URL; text
    longer than a message shows is cut (and marked with ...) first."""
    if len(text) > _SCRUBBED:
        text = text[:_SCRUBBED] + "..."
    text = _URL.sub(lambda match: redact_url(match.group()), text)
    text = _PAIR.sub(lambda match: f"{match['name']}={MASK}" if token_like(match["name"])
                     else match.group(), text)
    text = _USERINFO.sub(f"{MASK}@", text)
    return _SCHEME_CREDENTIAL.sub(lambda match: f"{match[1]} {MASK}", text)
