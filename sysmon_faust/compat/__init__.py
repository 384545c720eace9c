"""The only place that reaches into faust-streaming's and aiohttp's private API, with why."""
