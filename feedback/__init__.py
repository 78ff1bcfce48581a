"""Human feedback on generated images: storage, migrations and preference-dataset exports.

The app reads and writes feedback only through :class:`feedback.store.FeedbackStore`, the one place that writes SQL;
besides it, it uses only what works without the database: the constants of ``feedback.models`` (outcomes and limits
the schema enforces), the PNG provenance helpers of ``feedback.images``, and ``feedback.agreement`` on store rows.
"""
