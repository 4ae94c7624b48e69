"""The README's "Try it" block, command by command, against the running stack: every answer
is the one its comment promises."""

from tests.readme import run_try_it


def test_try_it_block_answers_as_the_readme_says(backend):
    results = run_try_it(backend.server_url, backend.api_key)
    assert len(results) >= 7
