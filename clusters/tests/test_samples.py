"""Istio's httpbin, helloworld and tcp-echo samples as the local cluster runs them.

The catalog maps the upstream images to this project's programs
(clusters/local/images/samples/); the servers are checked here over real sockets, and
on nodes with the sample's own Deployment and Service shapes (image, ports, args as
Istio's samples/*.yaml write them) reached from a client pod.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid

import pytest
from aiohttp.test_utils import TestClient, TestServer

from clusters.local.images.catalog import default_catalog
from clusters.local.images.samples import helloworld, httpbin, tcp_echo


def run(coro):
    return asyncio.run(coro)


async def _client(app):
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.mark.parametrize(("image", "module", "args", "listens"), [
    ("docker.io/mccutchen/go-httpbin:v2.15.0", "samples.httpbin", ["--port", "8080"],
     (8080,)),
    ("registry.istio.io/release/examples-helloworld-v2:1.0", "samples.helloworld",
     ["--version", "v2"], (5000,)),
    ("docker.io/istio/examples-helloworld-v1", "samples.helloworld", ["--version", "v1"],
     (5000,)),
    ("registry.istio.io/release/tcp-echo-server:1.3", "samples.tcp_echo",
     ["9000,9001,9002", "hello"], (9000, 9001, 9002)),
])
def test_the_catalog_maps_the_sample_images(image, module, args, listens):
    container = {"name": "c", "image": image}
    if "tcp-echo" in image:
        container["args"] = ["9000,9001,9002", "hello"]
    program = default_catalog().resolve(image, container)
    assert program.argv[1:3] == ["-m", f"clusters.local.images.{module}"]
    assert program.argv[3:] == args
    assert program.listens == listens


def test_the_tcp_echo_image_defaults_to_its_cmd():
    program = default_catalog().resolve("istio/tcp-echo-server:1.3", {"name": "c"})
    assert program.argv[3:] == ["9000", "hello"]


def test_httpbin_answers_in_go_httpbins_shapes():
    async def go():
        client = await _client(httpbin.app())
        try:
            r = await client.get("/get?b=2&a=1&a=3", headers={"X-Request-Id": "abc",
                                                               "user-agent": "tester"})
            got = await r.json()
            text = await r.text()
            assert list(got) == ["args", "headers", "method", "origin", "url"]
            assert got["args"] == {"a": ["1", "3"], "b": ["2"]}
            assert got["headers"]["X-Request-Id"] == ["abc"]  # Go-canonical names, lists
            assert got["headers"]["User-Agent"] == ["tester"]
            assert got["method"] == "GET" and got["origin"] == "127.0.0.1"
            assert text.startswith('{\n  "args"') and text.endswith("}\n")
            r = await client.get("/status/418")
            assert r.status == 418 and await r.text() == "I'm a teapot!"
            assert r.headers["X-More-Info"] == "http://tools.ietf.org/html/rfc2324"
            r = await client.get("/status/302", allow_redirects=False)
            assert (r.status, r.headers["Location"]) == (302, "/redirect/1")
            r = await client.post("/post", json={"k": [1, 2]})
            assert (await r.json())["json"] == {"k": [1, 2]}
            r = await client.put("/anything/x/y", data={"f": "v"})
            body = await r.json()
            assert body["method"] == "PUT" and body["form"] == {"f": ["v"]}
            r = await client.get("/ip", headers={"X-Forwarded-For": "10.1.2.3, 10.0.0.1"})
            assert await r.json() == {"origin": "10.1.2.3"}
            r = await client.get("/response-headers?X-Test=1&x-test=2")
            assert r.headers.getall("X-Test") == ["1", "2"]
            r = await client.get("/bytes/64?seed=1")
            assert len(await r.read()) == 64
            r = await client.get("/delay/0")
            assert r.status == 200 and "Server-Timing" in r.headers
            for bad in ("/delay/11", "/status/abc", "/bytes/999999999"):
                r = await client.get(bad)
                assert r.status == 400 and (await r.json())["status_code"] == 400
            r = await client.get("/no/such/endpoint")
            assert r.status == 404 and (await r.json())["error"] == "Not Found"
        finally:
            await client.close()

    run(go())


def test_helloworld_says_its_version_and_instance():
    async def go():
        client = await _client(helloworld.app("v2", "helloworld-v2-abc"))
        try:
            r = await client.get("/hello")
            assert await r.text() == "Hello version: v2, instance: helloworld-v2-abc\n"
            r = await client.get("/health")
            assert await r.text() == "Helloworld is healthy"
        finally:
            await client.close()

    run(go())


def test_tcp_echo_prefixes_every_line():
    async def go():
        servers = await tcp_echo.start([0, 0], "hello")
        try:
            for server in servers:
                # port 0: each family got its own free port; the IPv4 one is dialled
                port = next(sock.getsockname()[1] for sock in server.sockets
                            if sock.family == socket.AF_INET)
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"world\nagain\n")
                assert await reader.readline() == b"hello world\n"
                assert await reader.readline() == b"hello again\n"
                writer.close()
        finally:
            for server in servers:
                server.close()
                await server.wait_closed()

    run(go())


def test_tcp_echo_says_how_to_run_it(capsys):
    assert tcp_echo.main(["9000"]) == 1
    assert "you should run it like" in capsys.readouterr().out


SAMPLES = """
apiVersion: v1
kind: Service
metadata: {name: httpbin}
spec:
  ports: [{name: http, port: 8000, targetPort: 8080}]
  selector: {app: httpbin}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: httpbin}
spec:
  selector: {matchLabels: {app: httpbin}}
  template:
    metadata: {labels: {app: httpbin}}
    spec:
      containers:
      - {name: httpbin, image: docker.io/mccutchen/go-httpbin:v2.15.0,
         ports: [{containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: helloworld}
spec:
  ports: [{name: http, port: 5000}]
  selector: {app: helloworld}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: helloworld-v1}
spec:
  selector: {matchLabels: {app: helloworld, version: v1}}
  template:
    metadata: {labels: {app: helloworld, version: v1}}
    spec:
      containers:
      - {name: helloworld, image: registry.istio.io/release/examples-helloworld-v1:1.0,
         ports: [{containerPort: 5000}]}
---
apiVersion: v1
kind: Service
metadata: {name: tcp-echo}
spec:
  ports: [{name: tcp, port: 9000}, {name: tcp-other, port: 9001}]
  selector: {app: tcp-echo}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: tcp-echo}
spec:
  selector: {matchLabels: {app: tcp-echo}}
  template:
    metadata: {labels: {app: tcp-echo}}
    spec:
      containers:
      - {name: tcp-echo, image: registry.istio.io/release/tcp-echo-server:1.3,
         args: ["9000,9001,9002", "hello"], ports: [{containerPort: 9000}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: client}
spec:
  selector: {matchLabels: {app: client}}
  template:
    metadata: {labels: {app: client}}
    spec:
      containers:
      - {name: client, image: curlimages/curl, command: [sleep, "600"]}
"""


@pytest.mark.slow
@pytest.mark.kubectl
def test_the_samples_start_and_answer_on_nodes(nodes_kubectl):
    k = nodes_kubectl
    ns = f"samples-{uuid.uuid4().hex[:8]}"
    k("create", "namespace", ns)
    try:
        k("apply", "-n", ns, "-f", "-", input=SAMPLES)
        for deploy in ("httpbin", "helloworld-v1", "tcp-echo", "client"):
            k("rollout", "status", f"deployment/{deploy}", "-n", ns, "--timeout=90s",
              timeout=120)

        def from_client(*argv: str) -> str:
            return k("exec", "-n", ns, "deploy/client", "--", *argv).stdout

        headers = json.loads(from_client("curl", "-s", "http://httpbin:8000/headers"))
        assert headers["headers"]["Host"] == ["httpbin:8000"]
        assert from_client("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                           "http://httpbin:8000/status/418") == "418"
        hello = from_client("curl", "-s", "http://helloworld:5000/hello")
        assert hello.startswith("Hello version: v1, instance: helloworld-v1-")
        echo = from_client("bash", "-c", "exec 3<>/dev/tcp/tcp-echo/9001; echo world >&3; "
                           "head -1 <&3")
        assert echo == "hello world\n"
    finally:
        k("delete", "namespace", ns, "--wait=false")


@pytest.mark.parametrize(("container", "argv"), [
    ({"args": ["sh"]}, ["sh"]),                         # kubectl run ... -- sh
    ({"args": ["-s", "http://x"]}, ["curl", "-s", "http://x"]),  # options go to curl
    ({"args": ["http://x"]}, ["curl", "http://x"]),     # not a program: curl's argument
    ({"command": ["sleep"], "args": ["5"]}, ["sleep", "5"]),
    ({}, ["curl"]),
])
def test_curl_images_entrypoint_runs_a_program_or_curl(container, argv):
    program = default_catalog().resolve("curlimages/curl:8.11.0", {"name": "c", **container})
    assert program.argv == argv
