"""What a set of weights was made for. A checkpoint resumes, and an artifact warm-starts, only a
network of the same identity: one comparison, one message shape, for both."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NetworkIdentity:
    """Base network, input size and classes. `classes` (the names) is None where they are not
    known yet - a warm start is checked before the data is read - and then only their number
    is compared (what SageMaker's incremental training requires)."""

    base_network: str
    image_shape: int
    num_classes: int
    classes: tuple[str, ...] | None = None

    @classmethod
    def of_classes(cls, base_network: str, image_shape: int,
                   classes: tuple[str, ...]) -> NetworkIdentity:
        return cls(base_network, image_shape, len(classes), tuple(classes))

    def to_json(self) -> dict[str, Any]:
        """The form a checkpoint description stores."""
        return {"base_network": self.base_network, "image_shape": self.image_shape,
                "num_classes": self.num_classes,
                "classes": None if self.classes is None else list(self.classes)}

    @classmethod
    def from_json(cls, saved: Mapping[str, Any]) -> NetworkIdentity:
        """Read a stored identity (descriptions of an earlier version have no `num_classes`)."""
        classes = saved.get("classes")
        names = None if classes is None else tuple(str(name) for name in classes)
        count = saved.get("num_classes", None if names is None else len(names))
        return cls(str(saved.get("base_network")), int(saved.get("image_shape", 0)),
                   int(count or 0), names)

    def mismatches(self, wanted: NetworkIdentity, holder: str) -> list[str]:
        """Each field where `wanted` (the job's) differs from this one (`holder`'s, e.g. "the
        checkpoint"), naming both values; class names only where both sides know them."""
        pairs = [("base_network", self.base_network, wanted.base_network),
                 ("image_shape", self.image_shape, wanted.image_shape),
                 ("num_classes", self.num_classes, wanted.num_classes)]
        if self.classes is not None and wanted.classes is not None:
            pairs.append(("classes", list(self.classes), list(wanted.classes)))
        return [f"{name}: {holder} has {theirs!r}, the job asks for {ours!r}"
                for name, theirs, ours in pairs if theirs != ours]
