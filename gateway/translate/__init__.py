"""Client API shapes other than chat completions, and their translation to and from chat completions (pure: no I/O).

`messages`: Anthropic's Messages API; `responses`: OpenAI's Responses API. Providers speak chat completions
(gateway/providers/base.py), so an operation translates the request into a chat payload and the chat result or
chunks back into its own shapes; the Anthropic provider also serves /v1/messages natively.
"""
