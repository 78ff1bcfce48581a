"""Human feedback on generated images: storage, migrations and preference-dataset exports.

The app talks to :class:`feedback.store.FeedbackStore` only; it is the one place that writes SQL.
"""
