"""The clients' shapes are the daemon's models, generated; hints come from the daemon."""

from __future__ import annotations

from pathlib import Path

from banger.api import gen_shapes, models, shapes
from banger.daemon.hints import field_range, invalid_request, with_hint
from banger.store.repo import Missing, Taken


def test_the_committed_shapes_are_what_the_models_generate():
    committed = Path(shapes.__file__).read_text()
    assert gen_shapes.render() == committed, (
        "run: python -m banger.api.gen_shapes > src/banger/api/shapes.py"
    )


def test_every_model_has_a_shape_with_the_same_fields():
    _, wire = gen_shapes.wire_types()
    for model in wire:
        shape = getattr(shapes, model.__name__)
        assert shape._fields == tuple(model.model_fields), model.__name__


def round_trip(model: models.BaseModel) -> None:
    data = model.model_dump(mode="json")
    shape = getattr(shapes, type(model).__name__).from_json(data)
    assert shape.to_json() == data


def test_answers_read_into_shapes_say_what_the_daemon_sent():
    op = models.Operation(
        id="o", kind="vm.create", target="dev", state=models.OpState.FAILED, created_at="t",
        error=models.ErrorBody(code="not_found", message="m", hint="h"), result={"a": [1]},
    )  # fmt: skip
    round_trip(op)
    round_trip(models.Event(seq=1, type=models.EventType.DONE, time=1.5, operation=op))
    round_trip(
        models.VmHealth(
            name="dev",
            state=models.VmState.RUNNING,
            healthy=False,
            checks={"vmm": models.HealthCheck(ok=True, pid=3), "ssh": models.HealthCheck(ok=False)},
        )
    )
    round_trip(
        models.VmStats(
            name="dev",
            host=models.HostStats(pid=1, cpu_seconds=0.5, rss_bytes=10),
            guest=models.GuestStats(
                load=[0.1, 0.2, 0.3],
                disks=[models.GuestDisk(mount="/", size_bytes=2, used_bytes=1)],
            ),
        )
    )
    image = shapes.Image.from_json(
        {"name": "i", "kernel": "k", "rootfs": "/r", "size_bytes": 1, "source": "s",
         "created_at": "t"}
    )  # fmt: skip
    assert image.config == {} and image.work_seed == ""
    assert shapes.Vm.from_json(
        models.Vm(
            id="v", name="n", image="i", state=models.VmState.STOPPED, vcpus=1, memory_mib=1,
            overlay_bytes=1, ip="", tap="t", mac="m", vmm="q", dir="/d", created_at="t",
        ).model_dump(mode="json")
    ).state is shapes.VmState.STOPPED  # fmt: skip


def test_store_facts_get_command_hints_from_the_daemon():
    assert with_hint(Missing("VM", "x")).hint == "see `banger vm list` for the VMs that exist"
    assert "`banger vm delete x`" in (with_hint(Taken("VM", "x")).hint or "")
    assert "`banger image delete x`" in (with_hint(Taken("image", "x")).hint or "")
    # A hint the raiser gave stands.
    given = Missing("kernel", "x")
    given.hint = "mine"
    assert with_hint(given).hint == "mine"


def test_a_rejected_field_is_named_with_its_range():
    assert field_range("vcpus") == (1, 64)
    assert field_range("memory_mib") == (128, 1 << 20)
    body = invalid_request(
        [{"type": "greater_than_equal", "loc": ("body", "vcpus"), "msg": "Input should be >= 1",
          "input": 0, "ctx": {"ge": 1}}]
    )  # fmt: skip
    assert body.field == "vcpus"
    assert body.message == "vcpus: must be at least 1 (got 0)"
    assert body.hint and body.hint.startswith("vcpus takes 1 to 64; this host has ")
    odd = invalid_request([{"type": "missing", "loc": ("body", "names"), "msg": "Field required"}])
    assert (odd.message, odd.hint) == (
        "names: field required",
        "see /openapi.json for the request's shape",
    )
