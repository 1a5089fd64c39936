"""The product catalog: what can be sold, how it is billed, and its list price per currency.

A product is priced in one of two ways: the short form (``billing_model`` one_time or recurring
month/year + ``prices: {CUR: amount}``), or a ``price:`` block in exactly the format of a pricing
scenario's ``prices:`` entries (parsed by the same ``billing.parsing.parse_price``), which reaches
every model the engine has: usage, installments, any interval, billing timing and proration. Optional
``taxes:`` are the rates a product's ``tax:`` may name; ``Catalog.taxes`` hands them to ``generate``.

``Catalog.from_dict`` takes the already-parsed YAML (billing does no I/O) and reports *every*
problem at once with its key path, because an IT admin fixing ``catalog.yaml`` should not have to
re-run once per typo. Floats are refused: YAML reads ``49.90`` as a binary float, which is not the
amount that was written, so amounts must be quoted strings (``"49.90"``) or whole numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Final, Literal, get_args

from billing.money import CURRENCIES, Currency, Money
from billing.parsing import Reader, check_tax, parse_price, parse_taxes
from billing.pricing import PriceSpec
from billing.tax import TaxRate

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

_TOP_KEYS: Final = frozenset({"version", "products", "taxes"})
_SHORT_KEYS: Final = frozenset({"billing_model", "interval", "interval_count", "prices"})
_PRODUCT_KEYS: Final = _SHORT_KEYS | {"code", "name", "price", "tax", "tax_code"}


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
    """A sellable item: its catalog code, the name printed on invoices, and its price.

    Exactly one of ``price`` (the short one_time/recurring form) and ``price_block`` (engine prices
    from a ``price:`` block, one per currency) is set. ``tax``/``tax_code`` apply to every price of
    the product that does not name its own; ``specs`` is what the engine bills with.
    """

    code: str
    name: str
    price: Price | None = None
    price_block: tuple[PriceSpec, ...] = ()
    tax: str | None = None
    tax_code: str | None = None

    def __post_init__(self) -> None:
        if (self.price is None) == (not self.price_block):
            raise ValueError(f"product {self.code!r}: give either price or price_block, not both or neither")
        currencies: set[str] = set()
        for spec in self.price_block:
            if spec.id != self.code:
                raise ValueError(f"product {self.code!r}: its price id must be the code, got {spec.id!r}")
            if spec.currency.code in currencies:
                raise ValueError(f"product {self.code!r}: two prices in {spec.currency.code}")
            currencies.add(spec.currency.code)

    @property
    def specs(self) -> tuple[PriceSpec, ...]:
        """The engine's prices (id = product code), one per currency, with the product's tax applied."""
        if self.price is None:
            specs = self.price_block
        else:
            recurring = self.price.billing_model == "recurring"
            specs = tuple(
                PriceSpec(
                    id=self.code,
                    currency=Currency.of(code),
                    model="recurring" if recurring else "one_time",
                    amount=amount,
                    name=self.name,
                    interval=self.price.interval if recurring else None,
                    interval_count=self.price.interval_count,
                )
                for code, amount in self.price.amounts.items()
            )
        return tuple(
            replace(spec, tax=spec.tax or self.tax, tax_code=spec.tax_code or self.tax_code) for spec in specs
        )


class Catalog:
    """An immutable set of products looked up by code, and the tax rates they may name."""

    __slots__ = ("_products", "_taxes")

    def __init__(self, products: Iterable[Product], taxes: Iterable[TaxRate] = ()) -> None:
        self._taxes: tuple[TaxRate, ...] = tuple(taxes)
        tax_ids = {t.id for t in self._taxes}
        if len(tax_ids) < len(self._taxes):
            raise ValueError("duplicate tax rate id")
        by_code: dict[str, Product] = {}
        for product in products:
            if product.code in by_code:
                raise ValueError(f"duplicate product code {product.code!r}")
            for spec in product.specs:
                if spec.tax is not None and spec.tax not in tax_ids:
                    raise ValueError(f"product {product.code!r} names unknown tax rate {spec.tax!r}")
            by_code[product.code] = product
        self._products: Mapping[str, Product] = MappingProxyType(by_code)

    @property
    def taxes(self) -> tuple[TaxRate, ...]:
        """The catalog's tax rates, for ``generate(taxes=...)``."""
        return self._taxes

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
        taxes = parse_taxes(Reader(problems, data))
        tax_ids = {t.id for t in taxes}
        raw_products = data.get("products")
        if not isinstance(raw_products, list):
            problems.append(f"products: expected a list of products, got {_kind(raw_products)}")
            raw_products = []
        first_index: dict[str, int] = {}
        for index, raw in enumerate(raw_products):
            path = f"products[{index}]"
            product = _parse_product(raw, path, problems, tax_ids)
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
        return cls(products, taxes)


def _kind(value: object) -> str:
    return "nothing" if value is None else type(value).__name__


def _parse_product(raw: object, path: str, problems: list[str], tax_ids: set[str]) -> Product | None:
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
    reader = Reader(problems, raw, path)
    tax = reader.optional_text("tax")
    check_tax(reader, tax, tax_ids)
    tax_code = reader.optional_text("tax_code")

    if "price" in raw:
        price = None
        block = _parse_price_block(reader, code if isinstance(code, str) else "", tax_ids)
    else:
        price = _parse_short_price(raw, path, problems)
        block = ()

    if len(problems) > before:
        return None
    # Every check above passed, so the narrowing below only restates what was validated.
    assert isinstance(code, str) and isinstance(name, str)
    return Product(code, name.strip(), price, block, tax, tax_code)


def _parse_price_block(product: Reader, code: str, tax_ids: set[str]) -> tuple[PriceSpec, ...]:
    """A ``price:`` block: one scenario-format price entry, or a list of them (one per currency).

    ``id`` may be left out (it is the product code) and ``name`` defaults to the product's.
    """
    for key in sorted(_SHORT_KEYS & set(map(str, product.data))):
        product.problem(key, "remove it: a product with a price: block takes its billing from there")
    raw = product.data["price"]
    if isinstance(raw, Mapping):
        entries = [Reader(product.problems, raw, product.at("price"))]
    elif isinstance(raw, list) and raw:
        entries = product.items("price")
    else:
        product.problem(
            "price",
            f"expected a price mapping or a non-empty list of them (one per currency), got {_kind(raw)}",
        )
        return ()
    specs: list[PriceSpec] = []
    first_at: dict[str, str] = {}
    for entry in entries:
        data = dict(entry.data)
        if data.get("id", code) != code:
            entry.problem("id", f"must be the product code {code!r}, or left out (got {data['id']!r})")
        data["id"] = code or "?"  # a missing code is already a problem of the product
        data.setdefault("name", product.data.get("name"))
        spec = parse_price(Reader(entry.problems, data, entry.path), None)
        if spec is None or not check_tax(entry, spec.tax, tax_ids):
            continue
        if spec.currency.code in first_at:
            entry.problem(
                "currency",
                f"a second price in {spec.currency.code} (first at {first_at[spec.currency.code]})",
            )
            continue
        first_at[spec.currency.code] = entry.path
        specs.append(spec)
    return tuple(specs)


def _parse_short_price(raw: Mapping[str, object], path: str, problems: list[str]) -> Price | None:
    """The short form: ``billing_model`` one_time or recurring (month/year) + ``prices: {CUR: amount}``."""
    before = len(problems)
    model = raw.get("billing_model")
    if model not in BILLING_MODELS:
        problems.append(
            f"{path}.billing_model: must be one of {', '.join(BILLING_MODELS)} (got {model!r}); "
            "for usage, installment or other intervals write a price: block instead"
        )
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
    assert isinstance(count, int)
    if model == "recurring":
        return Price(
            "recurring", amounts, interval="month" if interval == "month" else "year", interval_count=count
        )
    return Price("one_time", amounts)


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
