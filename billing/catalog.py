"""The product catalog: what can be sold, how it is billed, and its list price per currency.

``Catalog.from_dict`` takes the already-parsed YAML (billing does no I/O) and reports *every*
problem at once with its key path, because an IT admin fixing ``catalog.yaml`` should not have to
re-run once per typo. Floats are refused: YAML reads ``49.90`` as a binary float, which is not the
amount that was written, so amounts must be quoted strings (``"49.90"``) or whole numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Final, Literal, get_args

from billing.money import CURRENCIES, Currency, Money

__all__ = [
    "BillingModel",
    "Catalog",
    "CatalogError",
    "Interval",
    "Price",
    "Product",
    "UnknownProductError",
]

BillingModel = Literal["one_time", "recurring"]
Interval = Literal["month", "year"]

BILLING_MODELS: Final[tuple[str, ...]] = get_args(BillingModel)
INTERVALS: Final[tuple[str, ...]] = get_args(Interval)

# Sanity bounds on list prices: a typo such as "1e99" or 30 decimals is never a real price.
_MAX_INTEGER_DIGITS: Final = 15
_MAX_DECIMAL_PLACES: Final = 10

_TOP_KEYS: Final = frozenset({"version", "products"})
_PRODUCT_KEYS: Final = frozenset({"code", "name", "billing_model", "interval", "interval_count", "prices"})


class CatalogError(ValueError):
    """The catalog data is invalid; ``problems`` lists each one as ``"<key path>: <what is wrong>"``."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid catalog ({len(self.problems)} problem(s)):\n{lines}")


class UnknownProductError(KeyError):
    """No product with this code; a KeyError so ``except KeyError`` callers keep working."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code

    def __str__(self) -> str:
        return f"unknown product code {self.code!r}"


@dataclass(frozen=True, slots=True)
class Price:
    """How a product is charged: once, or every ``interval_count`` ``interval``s, in advance.

    ``amounts`` maps a currency code to the list unit price in that currency (full precision).
    """

    billing_model: BillingModel
    amounts: Mapping[str, Decimal] = field(hash=False)
    interval: Interval | None = None
    interval_count: int = 1

    def __post_init__(self) -> None:
        if self.billing_model not in BILLING_MODELS:
            raise ValueError(f"billing_model must be one of {BILLING_MODELS}, got {self.billing_model!r}")
        if self.billing_model == "recurring" and self.interval not in INTERVALS:
            raise ValueError(f"a recurring price needs interval in {INTERVALS}, got {self.interval!r}")
        if self.billing_model == "one_time" and self.interval is not None:
            raise ValueError("a one_time price has no interval")
        if isinstance(self.interval_count, bool) or not isinstance(self.interval_count, int):
            raise TypeError("interval_count must be an int")
        if self.interval_count < 1:
            raise ValueError(f"interval_count must be >= 1, got {self.interval_count}")
        for code, amount in self.amounts.items():
            Currency.of(code)
            if not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0:
                raise ValueError(f"price in {code} must be a finite Decimal >= 0, got {amount!r}")
        # A read-only copy, so a caller mutating its dict cannot change a frozen price.
        object.__setattr__(self, "amounts", MappingProxyType(dict(self.amounts)))

    @property
    def months(self) -> int:
        """Length of one billing period in months (0 for one-time prices)."""
        if self.interval is None:
            return 0
        return self.interval_count * (12 if self.interval == "year" else 1)

    def amount_for(self, currency: Currency) -> Money | None:
        """The list unit price in ``currency``, or None when the catalog does not price it."""
        amount = self.amounts.get(currency.code)
        return None if amount is None else Money(amount, currency)


@dataclass(frozen=True, slots=True)
class Product:
    """A sellable item: its catalog code, the name printed on invoices, and its price."""

    code: str
    name: str
    price: Price


class Catalog:
    """An immutable set of products looked up by code."""

    __slots__ = ("_products",)

    def __init__(self, products: Iterable[Product]) -> None:
        by_code: dict[str, Product] = {}
        for product in products:
            if product.code in by_code:
                raise ValueError(f"duplicate product code {product.code!r}")
            by_code[product.code] = product
        self._products: Mapping[str, Product] = MappingProxyType(by_code)

    def get(self, code: str) -> Product:
        """The product with ``code``; raises ``UnknownProductError`` (a KeyError) if there is none."""
        try:
            return self._products[code]
        except KeyError:
            raise UnknownProductError(code) from None

    def __contains__(self, code: object) -> bool:
        return code in self._products

    def __iter__(self) -> Iterator[Product]:
        return iter(self._products.values())

    def __len__(self) -> int:
        return len(self._products)

    def __repr__(self) -> str:
        return f"Catalog({sorted(self._products)!r})"

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Catalog:
        """Build a catalog from parsed YAML/JSON; raises ``CatalogError`` listing every problem."""
        problems: list[str] = []
        products: list[Product] = []
        if not isinstance(data, Mapping):
            raise CatalogError([f"<root>: expected a mapping with a 'products' list, got {_kind(data)}"])
        for key in sorted(set(map(str, data)) - _TOP_KEYS):
            problems.append(f"{key}: unknown key; allowed: {', '.join(sorted(_TOP_KEYS))}")
        raw_products = data.get("products")
        if not isinstance(raw_products, list):
            problems.append(f"products: expected a list of products, got {_kind(raw_products)}")
            raw_products = []
        first_index: dict[str, int] = {}
        for index, raw in enumerate(raw_products):
            path = f"products[{index}]"
            product = _parse_product(raw, path, problems)
            if product is None:
                continue
            if product.code in first_index:
                problems.append(
                    f"{path}.code: duplicate product code {product.code!r} "
                    f"(first defined at products[{first_index[product.code]}])"
                )
                continue
            first_index[product.code] = index
            products.append(product)
        if problems:
            raise CatalogError(problems)
        return cls(products)


def _kind(value: object) -> str:
    return "nothing" if value is None else type(value).__name__


def _parse_product(raw: object, path: str, problems: list[str]) -> Product | None:
    """Parse one product entry, appending every problem found; None if any was found."""
    if not isinstance(raw, Mapping):
        problems.append(f"{path}: expected a mapping, got {_kind(raw)}")
        return None
    before = len(problems)
    for key in sorted(set(map(str, raw)) - _PRODUCT_KEYS):
        problems.append(f"{path}.{key}: unknown key; allowed: {', '.join(sorted(_PRODUCT_KEYS))}")

    code = raw.get("code")
    if not isinstance(code, str) or not code.strip():
        problems.append(f"{path}.code: required, a non-empty string (got {_kind(code)})")
    elif code != code.strip():
        problems.append(f"{path}.code: must not start or end with spaces: {code!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{path}.name: required, a non-empty string (got {_kind(name)})")

    model = raw.get("billing_model")
    if model not in BILLING_MODELS:
        problems.append(f"{path}.billing_model: must be one of {', '.join(BILLING_MODELS)} (got {model!r})")
    interval = raw.get("interval")
    count = raw.get("interval_count", 1)
    if model == "recurring":
        if interval not in INTERVALS:
            problems.append(
                f"{path}.interval: a recurring product needs one of {', '.join(INTERVALS)} (got {interval!r})"
            )
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            problems.append(f"{path}.interval_count: must be a whole number >= 1 (got {count!r})")
    elif model == "one_time":
        if "interval" in raw:
            problems.append(f"{path}.interval: a one_time product has no interval; remove it")
        if "interval_count" in raw:
            problems.append(f"{path}.interval_count: a one_time product has no interval_count; remove it")

    amounts = _parse_prices(raw.get("prices"), f"{path}.prices", problems)

    if len(problems) > before:
        return None
    # Every check above passed, so the narrowing below only restates what was validated.
    assert isinstance(code, str) and isinstance(name, str) and isinstance(count, int)
    if model == "recurring":
        price = Price(
            "recurring", amounts, interval="month" if interval == "month" else "year", interval_count=count
        )
    else:
        price = Price("one_time", amounts)
    return Product(code=code, name=name.strip(), price=price)


def _parse_prices(raw: object, path: str, problems: list[str]) -> dict[str, Decimal]:
    if not isinstance(raw, Mapping) or not raw:
        problems.append(
            f'{path}: required, a mapping of currency code to amount, e.g. USD: "49.00" (got {_kind(raw)})'
        )
        return {}
    amounts: dict[str, Decimal] = {}
    for key, value in raw.items():
        where = f"{path}.{key}"
        if not isinstance(key, str) or key not in CURRENCIES:
            problems.append(
                f"{where}: unknown currency code {key!r}; use an ISO 4217 code such as USD or EUR"
            )
            continue
        amount = _parse_amount(value, where, problems)
        if amount is not None:
            amounts[key] = amount
    return amounts


def _parse_amount(value: object, where: str, problems: list[str]) -> Decimal | None:
    if isinstance(value, float):
        problems.append(
            f"{where}: not a decimal amount: {value!r} was read as a float, which cannot hold money exactly; "
            f'quote it as a string, e.g. "{value}"'
        )
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        problems.append(
            f'{where}: not a decimal amount: expected a quoted string like "49.00", got {_kind(value)}'
        )
        return None
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        problems.append(f'{where}: not a decimal amount: {value!r}; write it like "49.00"')
        return None
    if not amount.is_finite():
        problems.append(f"{where}: not a decimal amount: {value!r} is not finite")
        return None
    if amount < 0:
        problems.append(f"{where}: a list price cannot be negative (got {value!r})")
        return None
    if amount.adjusted() >= _MAX_INTEGER_DIGITS:
        problems.append(f"{where}: not a decimal amount: {value!r} is too large")
        return None
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > _MAX_DECIMAL_PLACES:
        problems.append(
            f"{where}: not a decimal amount: {value!r} has more than {_MAX_DECIMAL_PLACES} decimals"
        )
        return None
    return amount
