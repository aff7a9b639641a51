"""Evaluation metrics: sample statistics (FID, KID, IS, class balance, PRDC), likelihood
bounds, image similarity and anomaly-detection ranking metrics."""

from genjax.metrics.anomaly import auprc, auroc
from genjax.metrics.clustering import cluster_accuracy
from genjax.metrics.features import ClassifierFeatures, InceptionFeatures
from genjax.metrics.inception import (InceptionV3, convert_inception, load_inception,
                                      read_torch_state_dict)
from genjax.metrics.image import l1, l2, psnr, ssim
from genjax.metrics.likelihood import (LikelihoodBounds, bits_per_dim, elbo,
                                       estimate_log_likelihood, gaussian_log_density, iwae_bound,
                                       log_importance_weights)
from genjax.metrics.statistics import (FeatureStats, class_balance, density_coverage,
                                       feature_statistics, fid, frechet_distance, inception_score,
                                       kid, kid_subset_indices, polynomial_mmd2, precision_recall)

__all__ = [
    "ClassifierFeatures", "FeatureStats", "InceptionFeatures", "InceptionV3", "LikelihoodBounds",
    "auprc", "auroc", "bits_per_dim", "class_balance", "cluster_accuracy", "convert_inception",
    "density_coverage", "elbo", "estimate_log_likelihood", "feature_statistics", "fid",
    "frechet_distance", "gaussian_log_density", "inception_score", "iwae_bound", "kid",
    "kid_subset_indices", "l1", "l2", "load_inception", "log_importance_weights",
    "polynomial_mmd2", "precision_recall", "psnr", "read_torch_state_dict", "ssim",
]
