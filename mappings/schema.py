"""What a spec is checked against on the vendor side: the fields of the object it reads or writes.

The mapping layer knows no vendor; the composition root hands it an :class:`ObjectSchema` per
``(system, object)`` built from each connector's own tables (Salesforce standard fields, QBO entity
fields, a WSDL's types). Without one, only the canonical side is checked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ObjectSchema:
    system: str
    object: str
    fields: frozenset[str]
    required: frozenset[str] = frozenset()
    #: Field-name endings an instance may define itself (Salesforce ``__c``): not checked offline.
    open_suffixes: tuple[str, ...] = ()
    #: Scalar kind of a field where the vendor publishes it (a WSDL's xsd types): string, decimal,
    #: date, boolean, integer, datetime. A cast to another kind is a spec error.
    kinds: Mapping[str, str] = field(default_factory=dict)
    #: Fields that take one of a fixed set of values (WSDL enumerations, picklists).
    enums: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def knows(self, name: str) -> bool:
        return name in self.fields or any(name.endswith(suffix) for suffix in self.open_suffixes)


SchemaLookup = Callable[[str, str], ObjectSchema | None]
