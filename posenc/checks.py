"""Field checks shared by every owner of config fields.

Each raises `ValueError` naming the field, its value and what would be valid.
`config` is the whole `ConfigDict`; `field` a dotted path such as
'model.d_model'. Imports nothing from posenc, so any module can use it.
"""

import contextlib
import math
import numbers
from typing import Any, Iterator


class ConfigError(ValueError):
  """A config value, or data it names, that cannot work: reported as one
  line naming the field (`posenc.main`)."""


@contextlib.contextmanager
def config_errors() -> Iterator[None]:
  """Reports every ValueError raised inside as a ConfigError: wrap the
  checks and loading that happen before a run writes anything."""
  try:
    yield
  except ConfigError:
    raise
  except ValueError as e:
    raise ConfigError(str(e)) from None


def divisors(n: int) -> list[int]:
  return [k for k in range(1, n + 1) if n % k == 0]


def choice(config: Any, field: str, valid: tuple[str, ...]) -> None:
  value = config[field]
  if value not in valid:
    raise ValueError(f'{field}={value!r} is not valid; valid values: '
                     f'{", ".join(valid)}.')


def _is_int(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(config: Any, field: str, *, optional: bool = False) -> None:
  """A positive integer (or None, if `optional`)."""
  value = config[field]
  if optional and value is None:
    return
  if not _is_int(value) or value <= 0:
    raise ValueError(f'{field}={value!r} is not valid; it must be a positive '
                     'integer.')


def non_negative_int(config: Any, field: str, *,
                     optional: bool = False) -> None:
  value = config[field]
  if optional and value is None:
    return
  if not _is_int(value) or value < 0:
    raise ValueError(f'{field}={value!r} is not valid; it must be a '
                     'non-negative integer.')


def real(config: Any, field: str, *, low: float, high: float = math.inf,
         low_inclusive: bool = False) -> None:
  """A finite number in (low, high), or [low, high) if `low_inclusive`."""
  value = config[field]
  ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
        and math.isfinite(value) and value < high
        and (value >= low if low_inclusive else value > low))
  if not ok:
    low_bracket = '[' if low_inclusive else '('
    raise ValueError(f'{field}={value!r} is not valid; it must be a finite '
                     f'number in {low_bracket}{low}, {high}).')


def boolean(config: Any, field: str) -> None:
  value = config[field]
  if not isinstance(value, bool):
    raise ValueError(f'{field}={value!r} is not valid; valid: True or False.')


def same_class(a: object, b: object) -> bool:
  """The same class, also when its module was reloaded or its notebook cell
  run again (registries then replace the entry rather than refuse it)."""
  ta, tb = type(a), type(b)
  return (ta.__module__, ta.__qualname__) == (tb.__module__, tb.__qualname__)
