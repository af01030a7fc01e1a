"""Rules for product keys, device names, client ids and secrets, and their generation."""

import re
import secrets
import string

PRODUCT_KEY_RE = re.compile(r"[A-Za-z0-9_-]{2,32}")
DEVICE_NAME_RE = re.compile(r"[A-Za-z0-9_@.:-]{4,32}")
SECRET_RE = re.compile(r"[\x21-\x7e]{1,64}")  # printable ASCII, no spaces
DEVICE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
CLIENT_ID_MAX = 64
PRODUCT_NAME_MAX = 64

_ALNUM = string.ascii_letters + string.digits


def generate_product_key() -> str:
    """11 characters, like the platform-issued keys in every public example (``a1`` + 9 random)."""
    return "a1" + "".join(secrets.choice(_ALNUM) for _ in range(9))


def generate_device_secret() -> str:
    """32 alphanumeric characters, the length devices expect."""
    return "".join(secrets.choice(_ALNUM) for _ in range(32))


_ALNUM_TABLE = bytes((_ALNUM * 5).encode()[:256])  # byte b -> _ALNUM[b % 62]; b >= 248 is dropped (unbiased)
_SECRET_LEN = 32


def generate_device_secrets(count: int) -> list[str]:
    """``count`` secrets like ``generate_device_secret``'s, from one draw of random bytes: a bulk import of a
    million devices would spend most of its time in ``secrets.choice`` otherwise."""
    wanted = count * _SECRET_LEN
    pool = b""
    while len(pool) < wanted:  # about 3% of the bytes are dropped; draw until there are enough
        pool += secrets.token_bytes(wanted - len(pool) + 64).translate(_ALNUM_TABLE, bytes(range(248, 256)))
    text = pool[:wanted].decode("ascii")
    return [text[i:i + _SECRET_LEN] for i in range(0, wanted, _SECRET_LEN)]


def check_product_key(product_key: str) -> str:
    if not PRODUCT_KEY_RE.fullmatch(product_key):
        raise ValueError("productKey must be 2-32 characters of letters, digits, '_' and '-'")
    return product_key


def check_device_name(device_name: str) -> str:
    if not DEVICE_NAME_RE.fullmatch(device_name):
        raise ValueError("deviceName must be 4-32 characters of letters, digits and - _ @ . :")
    return device_name


def check_secret(secret: str) -> str:
    if not SECRET_RE.fullmatch(secret):
        raise ValueError("deviceSecret must be 1-64 printable ASCII characters without spaces")
    return secret


def check_product_name(name: str) -> str:
    if not 1 <= len(name) <= PRODUCT_NAME_MAX or not name.isprintable():
        raise ValueError(f"product name must be 1-{PRODUCT_NAME_MAX} printable characters")
    return name


def check_device_id(device_id: str) -> str:
    if not DEVICE_ID_RE.fullmatch(device_id):
        raise ValueError("device_id must be 1-128 characters of letters, digits, '_' and '-'")
    return device_id


def default_device_id(product_key: str, device_name: str) -> str:
    """The IoTDA ``device_id`` of an Alibaba-style identity: ``<productKey>_<deviceName>``.

    IoTDA allocates ``<product_id>_<node_id>``; deviceName characters IoTDA does not allow (``@ . :``)
    become ``-``. An explicit ``--device-id`` overrides this (it is stored, so either way both dialects
    name the same device).
    """
    return f"{product_key}_{re.sub(r'[@.:]', '-', device_name)}"


def device_name_from_id(product_key: str, device_id: str) -> str:
    """The deviceName for a device created by its IoTDA id: the node id when the id is ``<pk>_<node>``."""
    prefix = product_key + "_"
    return device_id[len(prefix):] if device_id.startswith(prefix) else device_id
