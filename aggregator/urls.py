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


def url_host(url: str) -> str:
    """The URL's host name as one host is named once: lower case, without the root's trailing
    dot (``Example.com.`` and ``example.com`` are the same server)."""
    return (urlsplit(url).hostname or "").lower().rstrip(".")


def canonical_url(url: str) -> str:
    """The URL that identifies an article: tracking parameters, fragment and default port gone."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = url_host(url.strip())
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


def fits_key(key: str) -> bool:
    """Whether the key (a URL or GUID kept under a unique index) is short enough to index."""
    return len(key.encode("utf-8", "surrogatepass")) <= MAX_KEY_BYTES


def bounded_key(key: str) -> str:
    """The key if short enough to be indexed, else its beginning and a digest of the whole (in a
    fragment, which a canonical URL never has, so it collides with no real one)."""
    if fits_key(key):
        return key
    data = key.encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(data).hexdigest()
    head = data[: MAX_KEY_BYTES - len(_DIGEST_MARK) - len(digest)].decode("utf-8", "ignore")
    return f"{head}{_DIGEST_MARK}{digest}"


# IPv6 prefixes whose last 32 bits are an IPv4 address a kernel or gateway may deliver to:
# IPv4-compatible (deprecated), IPv4-translated (SIIT), NAT64's well-known prefix (RFC 6052).
IPV4_EMBEDDING_NETWORKS = tuple(
    ipaddress.IPv6Network(net) for net in ("::/96", "::ffff:0:0:0/96", "64:ff9b::/96")
)
# Not global, though older Pythons' is_global says so: local-use NAT64 (RFC 8215), site-local.
NON_PUBLIC_V6_NETWORKS = tuple(
    ipaddress.IPv6Network(net) for net in ("64:ff9b:1::/48", "fec0::/10")
)


def is_public_address(address: IpAddress) -> bool:
    """True for globally routable unicast addresses (not private, loopback, CGNAT, link-local …);
    an IPv6 address that carries an IPv4 one (mapped, 6to4, NAT64 …) is judged by that one."""
    if isinstance(address, ipaddress.IPv6Address):
        if any(address in net for net in NON_PUBLIC_V6_NETWORKS):
            return False
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public_address(embedded)
    return address.is_global and not address.is_multicast


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    embedded = address.ipv4_mapped or address.sixtofour
    if embedded is None and any(address in net for net in IPV4_EMBEDDING_NETWORKS):
        embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return embedded


def is_address_allowed(address: IpAddress, allowed_networks: Iterable[IpNetwork]) -> bool:
    """Public addresses always; others only inside a network the operator allowed."""
    return is_public_address(address) or any(address in net for net in allowed_networks)
