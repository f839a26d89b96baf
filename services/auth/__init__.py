"""Users, roles and API keys, shared by the three services.

One keys store (``auth_database_url``, SQLite by default) holds the API keys (hashed) and the audit log. Every
service resolves the ``authorization: Bearer <key>`` it receives to a :class:`~services.auth.policy.Principal`
(``services.auth.policy``: the roles and what each may do; ``services.auth.store``: the keys and the audit log).
With no key in the store and no ``api_token``, everything runs open, as one local admin.
"""
