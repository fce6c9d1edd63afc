"""chunkindex: chunk-reference indexes of array archives that GDAL reads natively.

The user-facing API (everything else is internal and may change):

* `load_recipe(path)` / `infer_recipe(source)`: a recipe, from YAML or inferred from a folder.
* `run_recipe(recipe, base_dir, workdir)`: index a recipe in one process -> `IndexResult`.
* `validate_recipe_index(recipe, index)`: check an index against its sources -> `ValidationReport`.
* `open_index(path)` / `lookup_reference(index, array, key)`: read an index's references.

Example:
    >>> import chunkindex
    >>> recipe, _ = chunkindex.infer_recipe("resources/fixtures/bran")  # doctest: +SKIP
    >>> result = chunkindex.run_recipe(recipe, ".", "out")  # doctest: +SKIP
    >>> chunkindex.open_index(result.index).array_names  # doctest: +SKIP

Names are imported on first use, so `import chunkindex` (and the command
line's start-up) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from chunkindex.indexes.kerchunk import (
        ArrayReferences,
        ChunkReference,
        KerchunkIndex,
        lookup_reference,
        open_index,
    )
    from chunkindex.infer import InferenceError, infer_recipe
    from chunkindex.pipeline import IndexResult, WriteSummary, quick_recipe, run_recipe, validate_recipe_index
    from chunkindex.recipe import Recipe, RecipeError, load_recipe
    from chunkindex.sources.listing import ListingError
    from chunkindex.validate import Mismatch, ValidationFailed, ValidationReport

# Public name -> the module that defines it.
_EXPORTS = {
    "load_recipe": "chunkindex.recipe",
    "Recipe": "chunkindex.recipe",
    "RecipeError": "chunkindex.recipe",
    "infer_recipe": "chunkindex.infer",
    "InferenceError": "chunkindex.infer",
    "quick_recipe": "chunkindex.pipeline",
    "run_recipe": "chunkindex.pipeline",
    "validate_recipe_index": "chunkindex.pipeline",
    "IndexResult": "chunkindex.pipeline",
    "WriteSummary": "chunkindex.pipeline",
    "ValidationReport": "chunkindex.validate",
    "ValidationFailed": "chunkindex.validate",
    "Mismatch": "chunkindex.validate",
    "ListingError": "chunkindex.sources.listing",
    "KerchunkIndex": "chunkindex.indexes.kerchunk",
    "ArrayReferences": "chunkindex.indexes.kerchunk",
    "ChunkReference": "chunkindex.indexes.kerchunk",
    "lookup_reference": "chunkindex.indexes.kerchunk",
    "open_index": "chunkindex.indexes.kerchunk",
}

__all__ = [
    "ArrayReferences", "ChunkReference", "IndexResult", "InferenceError", "KerchunkIndex", "ListingError",
    "Mismatch", "Recipe", "RecipeError", "ValidationFailed", "ValidationReport", "WriteSummary", "__version__",
    "infer_recipe", "load_recipe", "lookup_reference", "open_index", "quick_recipe", "run_recipe",
    "validate_recipe_index",
]
assert set(__all__) == {"__version__", *_EXPORTS}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'chunkindex' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
