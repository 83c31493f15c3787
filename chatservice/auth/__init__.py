"""Accounts and logging in: the credentials file, the ``twisted.cred`` checker
and realm, the login lock-out, and the :class:`~chatservice.auth.login.LoginGate`
that connections log in through.
"""
