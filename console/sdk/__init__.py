"""The seed-compatible SDK: the seed's class and function names on top of the one engine.

``seed`` holds ``ClaudeAuthService``, ``ClaudeOAuthFlow``, ``ClaudeOAuthHandler`` and the
module-level helpers; ``claude_oauth_db`` the seed's ``ClaudeOAuthDatabase``. The seed's
documented module paths (``console.claude_auth_service``, ``console.claude_oauth_flow``,
``console.claude_oauth_handler``, ``console.claude_oauth_db``) are aliases of these.
"""
