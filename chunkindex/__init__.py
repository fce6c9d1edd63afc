"""chunkindex: chunk-reference indexes of array archives that GDAL reads natively."""

__version__ = "0.1.0"
