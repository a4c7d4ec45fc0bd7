"""The harness's private engine runs real containers (a missing engine fails, never skips)."""


def test_private_engine_runs_a_container(docker_client):
    out = docker_client.containers.run("agent:local", ["echo", "hi"], network_mode="none", remove=True)
    assert out.strip() == b"hi"
