"""longtail.data: sources, long-tail builders, splits, transforms, tensor cache (docs/data.md)."""

from . import preprocess, sources, transforms  # noqa: F401  (register datasets and transforms)
from .build import DataBundle, build_data
from .dataset import FileImageDataset, ImageDataset, TensorImageDataset
from .decode import Decoder, decode_image_file
from .describe import describe, plot_class_histogram
from .longtail import make_long_tailed
from .sources import Source
from .splits import grouped_stratified_split, stratified_split
from .transforms import Pipeline, build_pipeline

__all__ = [
    "DataBundle",
    "Decoder",
    "FileImageDataset",
    "ImageDataset",
    "Pipeline",
    "Source",
    "TensorImageDataset",
    "build_data",
    "build_pipeline",
    "decode_image_file",
    "describe",
    "grouped_stratified_split",
    "make_long_tailed",
    "plot_class_histogram",
    "stratified_split",
]
