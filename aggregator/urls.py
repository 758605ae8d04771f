"""URL identity and address safety: pure functions, no network."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

TRACKING_PARAMS = frozenset(
    {"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "igshid", "yclid", "_ga", "ocid"}
)
TRACKING_PREFIXES = ("utm_",)
DEFAULT_PORTS = {"http": 80, "https": 443}
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def is_tracking_param(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMS or lowered.startswith(TRACKING_PREFIXES)


def canonical_url(url: str) -> str:
    """The URL that identifies an article: tracking parameters, fragment and default port gone."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if parts.port and parts.port != DEFAULT_PORTS.get(scheme):
        host = f"{host}:{parts.port}"
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not is_tracking_param(k)
    ]
    return bounded_key(urlunsplit((scheme, host, parts.path or "/", urlencode(query), "")))


# PostgreSQL indexes at most 2704 bytes of a row: a longer canonical URL or GUID (both unique
# keys) would fail the insert, and with it the poll of the whole feed.
MAX_KEY_BYTES = 2000
_DIGEST_MARK = "#sha256="


def bounded_key(key: str) -> str:
    """The key if short enough to be indexed, else its beginning and a digest of the whole (in a
    fragment, which a canonical URL never has, so it collides with no real one)."""
    data = key.encode("utf-8", "surrogatepass")
    if len(data) <= MAX_KEY_BYTES:
        return key
    digest = hashlib.sha256(data).hexdigest()
    head = data[: MAX_KEY_BYTES - len(_DIGEST_MARK) - len(digest)].decode("utf-8", "ignore")
    return f"{head}{_DIGEST_MARK}{digest}"


def is_public_address(address: IpAddress) -> bool:
    """True for globally routable unicast addresses (not private, loopback, CGNAT, link-local …)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return is_public_address(address.ipv4_mapped)
    return address.is_global and not address.is_multicast


def is_address_allowed(address: IpAddress, allowed_networks: Iterable[IpNetwork]) -> bool:
    """Public addresses always; others only inside a network the operator allowed."""
    return is_public_address(address) or any(address in net for net in allowed_networks)
