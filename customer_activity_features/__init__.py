"""The seed's import path (SPEC §6): the in-memory engine and its one-shot helpers, re-exported.

from customer_activity_features import CustomerActivityFeatures, calculate_purchase_features
"""

from stream_features import CustomerActivityFeatures, calculate_purchase_features, calculate_session_features

__all__ = ["CustomerActivityFeatures", "calculate_purchase_features", "calculate_session_features"]
