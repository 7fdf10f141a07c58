"""The C core against the Python reference: bit-exact weights, layouts, int8, shared vectors."""

import json
import re
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from corpus import reseal, section

from inn_mobile import native
from inn_mobile.app import models
from inn_mobile.core import kernel
from inn_mobile.core.convert import convert
from inn_mobile.core.integral import sizes_key
from inn_mobile.format import bundle, lz, reference, runtime_file
from inn_mobile.runtime.core_network import core_network

VECTORS = Path(__file__).parent / "vectors"


@pytest.mark.parametrize("suffix", ["", "_i8"], ids=["f32-nodes", "i8-nodes"])
def test_shared_vectors_match_the_python_reference(suffix):
    """expected.bin was written by the Python reference; it must still produce it exactly."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
    from make_test_vectors import expected_graphs, expected_records

    b = bundle.load(VECTORS / f"vectors{suffix}.innb")
    assert expected_records(b) == (VECTORS / f"expected{suffix}.bin").read_bytes()
    assert expected_graphs(b) == (VECTORS / f"expected_graphs{suffix}.bin").read_bytes()


def test_c_fills_graph_images_exactly_like_python():
    """Every hole kind (weights in each layout, int8, scales, f32/int32 biases, bias scales) and the
    stored bytes and zero runs around them: the C core rebuilds the same bytes as the reference, in one
    part or in several on threads."""
    b = bundle.load(VECTORS / "vectors.innb")
    nb = native.NativeBundle.from_file(VECTORS / "vectors.innb")
    assert nb.graphs() == [(k, "vectors") for k in range(len(b.buckets))]
    for k in range(len(b.buckets)):
        want = reference.fill(b, k, "vectors")
        got = nb.fill(k, "vectors", threads=1)
        assert list(got) == ["a.bin", "b.bin", "c.bin"] and got == want  # c.bin: packed stored bytes
        for threads in (2, 3, 8):  # layers dealt to parts run at once: the same bytes, whatever the split
            assert nb.fill(k, "vectors", threads=threads) == want, threads
        stored = sum(len(c) for im in b.images(k, "vectors") for _, c in im.spans)
        assert stored < sum(len(v) for v in want.values()) / 2  # holes and zero runs are not stored


def test_graph_errors_name_what_is_missing():
    b = bundle.load(VECTORS / "vectors.innb")
    nb = native.NativeBundle.from_file(VECTORS / "vectors.innb")
    with pytest.raises(native.NativeError, match="MISSING"):
        nb.fill(0, "litert")
    with pytest.raises(KeyError, match="runtimes: \\['vectors'\\]"):
        b.images(0, "litert")
    with pytest.raises(KeyError, match="not in bundle"):
        b.images("w0300", "vectors")


def test_bad_graph_records_are_rejected_by_both_readers():
    """A hole whose size does not match the bucket's tensor, and a hole past its image."""
    b = bundle.load(VECTORS / "vectors.innb")
    stored = b.images(0, "vectors")
    spec_holes = stored[0].holes
    for bad_hole in (runtime_file.Hole(spec_holes[0].offset, spec_holes[0].size - 4, 0),
                     runtime_file.Hole(stored[0].size + 8, 4, 0, "bias")):
        holes = [bad_hole] + spec_holes[1:]
        size = max(stored[0].size, bad_hole.offset + 8)
        record = runtime_file.encode_record([runtime_file.Image("a.bin", bytes(size), holes)])
        # sizes/offsets were checked by Image; rewrite the image size to make the second hole leave it
        record = record.replace(struct.pack("<Q", max(stored[0].size, bad_hole.offset + 8)),
                                struct.pack("<Q", stored[0].size), 1)
        b.graphs[(0, "vectors")] = record
        data = bundle.encode(b)
        with pytest.raises(native.NativeError, match="FORMAT"):
            native.NativeBundle(data).fill(0, "vectors")
        with pytest.raises(runtime_file.RecordError):
            reference.fill(bundle.decode(data), 0, "vectors")


def test_packed_record_smaller_than_its_stored_spans():
    """A graph whose structure packs far below its stored size (as real .pte files do)."""
    b = bundle.load(VECTORS / "vectors.innb")
    spec_holes = b.images(0, "vectors")[0].holes
    size = spec_holes[-1].offset + spec_holes[-1].size
    table = b"".join(b"tensor_%05d:" % k + bytes(20) for k in range(4000))  # stored, repetitive
    holes = [runtime_file.Hole(len(table) + h.offset, h.size, h.layer, h.tensor, h.layout, h.dtype, h.param)
             for h in spec_holes]
    im = runtime_file.Image("big.pte", table + bytes(size), holes)
    b.graphs[(0, "vectors")] = record = runtime_file.encode_record([im])
    assert len(record) < len(table) / 4
    data = bundle.encode(b)
    want = reference.fill(bundle.decode(data), 0, "vectors")
    assert native.NativeBundle(data).fill(0, "vectors") == want and want["big.pte"][:len(table)] == table


def test_corrupt_packed_bytes_are_rejected_by_both_readers():
    """c.bin's stored bytes are LZ-packed: a match reaching before the start, a stream cut short and
    one that yields too many bytes each fail validation, before anything is written."""
    b = bundle.load(VECTORS / "vectors.innb")
    record = b.graphs[(0, "vectors")]
    stored = b.images(0, "vectors")[2]
    raw = b"".join(c for _, c in stored.spans)
    packed = lz.encode(raw)
    at = record.index(packed)
    for bad in (b"\x00\xff\xff" + packed[3:],  # no literals, then a match 65535 back
                packed[:len(packed) // 2] + bytes(len(packed) - len(packed) // 2),
                packed[:-1] + bytes([packed[-1] ^ 0x40])):
        assert len(bad) == len(packed)
        b.graphs[(0, "vectors")] = record[:at] + bad + record[at + len(packed):]
        data = bundle.encode(b)
        with pytest.raises(native.NativeError, match="FORMAT"):
            native.NativeBundle(data).fill(0, "vectors")
        with pytest.raises(runtime_file.RecordError):
            reference.fill(bundle.decode(data), 0, "vectors")


@pytest.mark.parametrize("points, n, m", [(None, 23, 40), ("trained", 23, 40), (None, 96, 96), (None, 1153, 1153),
                                           (None, 97, 193), ("nodes", 96, 96)])
def test_taps_and_quadrature_match(points, n, m):
    """Uniform and trained partitions, and points on the nodes (full width, n - 1 dividing m - 1; stored as
    float32 points too), where both snap the positions' rounding error the same way."""
    p = {None: None, "nodes": kernel.uniform_partition(n).float(),
         "trained": kernel.partition_from_deltas(torch.rand(n - 1) + 0.2).float()}[points]
    idx, w = native.taps(None if p is None else p.numpy(), n, m)
    pts = kernel.uniform_partition(n) if p is None else p.double()
    ridx, rw = kernel.taps(pts, m)
    assert np.array_equal(idx, ridx.numpy()) and np.array_equal(w, rw.numpy())
    for code, rule in enumerate(kernel.QUADRATURES):
        if rule == "simpson" and p is not None:
            continue
        assert np.array_equal(native.quadrature(None if p is None else p.numpy(), n, code),
                              kernel.quadrature(pts, rule).numpy())


def test_quantizer_matches_torch_reference():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(37, 5, 9, generator=g)
    w[3] = 0.0  # a dead channel: ai-edge-quantizer's floor, scale 1e-9f / 127
    w[5] *= 1e-12  # a tiny one: same floor, its values quantised against it
    w[4, 0, 0] = 127 * 0.5  # exact halves exercise round-half-to-even
    q, s = native.quantize(w.numpy())
    rq, rs = reference.quantize_per_channel(w)
    assert np.array_equal(q, rq.numpy()) and np.array_equal(s, rs.numpy())
    assert s[3] == s[5] == np.float32(np.float32(1e-9) / np.float32(127)) and not q[3].any()
    qi, si = native.quantize(np.ascontiguousarray(w.numpy().transpose(1, 2, 0)), "ito")
    assert np.array_equal(qi, q.transpose(1, 2, 0)) and np.array_equal(si, s)


def _bundle_with_trained_partitions(arch, *, norms: bool = False):
    """Four widths, non-uniform partitions at one; ``norms``: per-width normalisation on every layer with a bias."""
    name, model, x = arch
    im = convert(model, x)
    buckets = bundle.make_buckets(im, (0.3, 0.5, 0.8, 1.0))
    g = torch.Generator().manual_seed(1)
    for gid, n in buckets[1].sizes.items():  # non-uniform partitions at one width
        if im.groups[gid].resizable:
            im.partitions[(gid, n)] = kernel.partition_from_deltas(torch.rand(n - 1, generator=g) + 0.2).float()
    if norms:
        for bk in buckets:
            sizes = im.check_sizes(bk.sizes)
            im.norms[sizes_key(sizes)] = {
                s.name: (torch.rand(n, generator=g) + 0.5, torch.randn(n, generator=g) * 0.1)
                for s in im.layers if s.has_bias and s.kind != "affine" for n in [s.out_channels(sizes)]}
    return bundle.Bundle(im, buckets)


@pytest.mark.parametrize("norms", [False, True], ids=["plain", "per-width-norm"])
@pytest.mark.parametrize("node_dtype", ["f32", "f16", "i8"])
def test_every_layer_every_bucket_bit_exact(arch, node_dtype, norms):
    b = _bundle_with_trained_partitions(arch, norms=norms)
    data = bundle.encode(b, node_dtype=node_dtype)
    rb = bundle.decode(data)
    nb = native.NativeBundle(data)
    kinds = set()
    for k in range(nb.bucket_count):
        scratch = np.zeros(nb.scratch_size(k), np.uint8)
        for layout in reference.LAYOUTS:
            for dtype in ("f32", "i8"):
                for layer, (rw, rs, rbias) in enumerate(reference.materialize(rb, k, layout=layout, dtype=dtype)):
                    spec = rb.model.layers[layer]
                    if spec.kind == "affine" and dtype == "i8":
                        continue
                    kinds.add((spec.kind, spec.blocks > 1, spec.module))
                    w, s, bias = nb.materialize(k, layer, layout=layout, dtype=dtype, scratch=scratch)
                    assert np.array_equal(w, rw), (spec.name, k, layout, dtype)
                    if rs is not None:
                        assert np.array_equal(s, rs)
                    if rbias is not None:
                        assert np.array_equal(bias, rbias)
    assert ("dense", False, "conv2d") in kinds and ("dense", False, "linear") in kinds


def test_per_width_norm_scales_weight_rows_and_shifts_biases(arch):
    """The core applies W[o] * a[o] and b[o] * a[o] + c[o] after resampling, int8 quantisation after that."""
    normed = _bundle_with_trained_partitions(arch, norms=True)
    plain = native.NativeBundle(bundle.encode(bundle.Bundle(_bundle_with_trained_partitions(arch).model,
                                                            normed.buckets)))
    nb = native.NativeBundle(bundle.encode(normed))
    covered = 0
    for k in range(nb.bucket_count):
        for layer, spec in enumerate(normed.model.layers):
            got = nb.norm(k, layer)
            if not spec.has_bias or spec.kind == "affine":
                assert got is None
                continue
            a, c = got
            sizes = normed.model.check_sizes(normed.buckets[k].sizes)
            want_a, want_c = normed.model.norms[sizes_key(sizes)][spec.name]
            assert np.array_equal(a, want_a.numpy()) and np.array_equal(c, want_c.numpy())
            w0, _, b0 = plain.materialize(k, layer)
            w, _, bias = nb.materialize(k, layer)
            rows = w0.reshape(len(a), -1)
            assert np.array_equal(w.reshape(len(a), -1), rows * a[:, None])
            assert np.array_equal(bias, b0 * a + c)
            q, scales, _ = nb.materialize(k, layer, dtype="i8")
            rq, rs = native.quantize(rows * a[:, None])
            assert np.array_equal(q, rq.ravel()) and np.array_equal(scales, rs)
            covered += 1
    assert covered >= 2 * nb.bucket_count


def test_materialized_weights_run_the_resized_model(arch):
    """Weights from C, loaded into the torch module of the same width, give the same outputs."""
    name, model, x = arch
    im = convert(model, x)
    buckets = bundle.make_buckets(im, (0.5,))
    nb = native.NativeBundle(bundle.encode(bundle.Bundle(im, buckets)))
    torch_small = im.resize(sizes=buckets[0].sizes)
    c_small = core_network(im, nb, 0, buckets[0].sizes)
    with torch.no_grad():
        assert torch.equal(c_small(x), torch_small(x))


def test_layers_materialised_from_several_threads_at_once_match_one_thread():
    """The core keeps no state between calls (the opened bundle is only read): threads that each
    materialise every layer, with scratch of their own, at the same time as the others (the ctypes
    call releases the GIL), get the same bits as one thread."""
    torch.manual_seed(0)
    model = models.resnet(widths=(32, 64, 128, 256), blocks=(1, 1, 1, 1), in_channels=3, num_classes=100).eval()
    im = convert(model, torch.randn(1, 3, 32, 32), permute=False)
    nb = native.NativeBundle(bundle.encode(bundle.Bundle(im, bundle.make_buckets(im, (0.5, 0.75, 1.0)))))
    jobs = [(k, layer) for k in range(nb.bucket_count) for layer in range(nb.layer_count)]

    def run(order):
        scratch = {k: np.zeros(nb.scratch_size(k), np.uint8) for k in range(nb.bucket_count)}
        return {job: nb.materialize(*job, scratch=scratch[job[0]]) for job in order for _ in range(2)}

    want = run(jobs)
    with ThreadPoolExecutor(4) as pool:  # each thread in its own order, so different layers overlap
        results = list(pool.map(run, [jobs if t % 2 == 0 else jobs[::-1] for t in range(4)]))
    for got in results:
        for job, (w, _, b) in want.items():
            assert np.array_equal(got[job][0], w) and np.array_equal(got[job][2], b), job


def test_every_finite_float16_node_is_widened_exactly():
    """float16 nodes are widened by F16C where the CPU has it, by bit arithmetic elsewhere (and for a
    row's tail): every finite half, subnormals and -0 included, must come out as the exact float32."""
    halves = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    halves = halves[np.isfinite(halves)].reshape(248, 256, 1)  # 63488 finite values
    model = torch.nn.Sequential(torch.nn.Linear(256, 248))  # fixed input and output axes: W = nodes
    im = convert(model, torch.randn(1, 256))
    with torch.no_grad():
        im.nodes[im.layers[0].name.replace(".", "__") + "__weight"].copy_(torch.from_numpy(halves.astype(np.float32)))
    nb = native.NativeBundle(bundle.encode(bundle.Bundle(im, bundle.make_buckets(im, (1.0,))), node_dtype="f16"))
    w, _, _ = nb.materialize(0, 0)
    assert np.array_equal(w.view(np.uint32), halves.astype(np.float32).ravel().view(np.uint32))


def test_native_errors_are_specific():
    good = (VECTORS / "vectors.innb").read_bytes()
    nb = native.NativeBundle(good)
    with pytest.raises(native.NativeError, match="MISSING"):
        nb.layer_info(99, 0)
    cases = {
        "TRUNCATED": good[:-100],
        "MAGIC": b"XXXX" + good[4:],
        "CHECKSUM": good[:200] + bytes([good[200] ^ 1]) + good[201:],
    }
    for name, data in cases.items():
        with pytest.raises(native.NativeError, match=name) as e:
            native.NativeBundle(data)
        assert e.value.name == name


# -------------------------------------------------------------------------------- 1.3: what a device chooses from
def _without(data: bytes, *tags: bytes, minor: int) -> bytes:
    """``data`` re-packed without sections ``tags`` and with version minor ``minor`` (an older writer's file)."""
    from corpus import as_minor

    count, table = struct.unpack_from("<IQ", data, 12)
    flags = struct.unpack_from("<I", data, 32)[0]
    sections = []
    for i in range(count):
        tag, _, off, size, elem, _ = struct.unpack_from("<4sIQQII", data, table + 32 * i)
        if tag not in tags:
            sections.append((tag, data[off:off + size], elem))
    return as_minor(bundle._pack(sections, flags=flags), minor)  # noqa: SLF001 - the writer's own layout


@pytest.mark.parametrize("suffix", ["", "_i8"], ids=["f32-nodes", "i8-nodes"])
def test_bucket_names_ratios_and_costs_agree_between_readers(suffix):
    data = (VECTORS / f"vectors{suffix}.innb").read_bytes()
    py, nb = bundle.decode(data), native.NativeBundle(data)
    assert [(b.name, b.ratio) for b in py.buckets] == [(i.name, i.ratio) for i in map(nb.bucket_info, range(3))]
    assert nb.bucket_names() == ["r1.0", "r0.75", "r0.5"]
    assert nb.costs() == py.costs() and len(nb.costs()) == 4
    assert nb.cost(0, "vectors") == bundle.Cost(5000, 7000, 900, 97.25) == py.cost("r1.0", "vectors")
    assert nb.cost(1, "vectors") == bundle.Cost(weights_bytes=3000, accuracy=91.125)
    assert nb.cost(2, "sixteen-chars-rt") == bundle.Cost(weights_bytes=(1 << 40) + 3, arena_bytes=0)
    assert nb.cost(2, "vectors") == bundle.Cost() and nb.cost(1, "litert") is None and py.cost(1, "litert") is None
    with pytest.raises(native.NativeError, match="INN_ERR_ARG"):
        nb.cost(0, "a-runtime-name-too-long")
    assert [s.name for s in py.model.layers] == [nb.layer_info(0, i).name for i in range(nb.layer_count)]


def test_binary_tables_win_over_meta():
    """META is informational: names, ratios and costs come from NAME/BKIN/COST in both readers."""
    from corpus import section, section_size, with_section

    good = (VECTORS / "vectors.innb").read_bytes()
    meta = json.loads(good[section(good, b"META"):section(good, b"META") + section_size(good, b"META")])
    for i, bm in enumerate(meta["buckets"]):
        bm.update(name=f"meta{i}", ratio=0.125, info={"runtimes": {"vectors": {"weights_bytes": 1}}})
    for lm in meta["layers"]:
        lm["name"] = "meta." + lm["name"]
    data = with_section(good, b"META", json.dumps(meta).encode())
    py, nb = bundle.decode(data), native.NativeBundle(data)
    assert [b.name for b in py.buckets] == nb.bucket_names() == ["r1.0", "r0.75", "r0.5"]
    assert py.costs() == nb.costs() == bundle.decode(good).costs()
    assert [s.name for s in py.model.layers] == [s.name for s in bundle.decode(good).model.layers]


def test_bundles_before_1_3_take_names_and_costs_from_meta():
    good = (VECTORS / "vectors.innb").read_bytes()
    old = _without(good, b"BKIN", b"COST", minor=2)
    py, nb = bundle.decode(old), native.NativeBundle(old)
    assert [(b.name, b.ratio) for b in py.buckets] == [(i.name, i.ratio) for i in map(nb.bucket_info, range(3))] == [
        ("r1.0", 1.0), ("r0.75", 0.75), ("r0.5", 0.5)]
    assert py.costs() == bundle.decode(good).costs()  # META's copy
    assert nb.costs() == {} and nb.cost(0, "vectors") is None  # the core reads binary tables only
    for k in range(3):
        a, b = native.NativeBundle(good).materialize(k, 1), nb.materialize(k, 1)
        assert all(np.array_equal(x, y) for x, y in zip(a, b) if x is not None)


def test_meta_of_the_wrong_shape_is_a_bundle_error():
    from corpus import with_section

    good = (VECTORS / "vectors.innb").read_bytes()
    for payload in (b"[]", b'{"buckets": 3}', b'{"input_shape": [NaN]}', b"{x", b'{"a": "\xff"}'):
        nb = native.NativeBundle(with_section(good, b"META", payload))
        with pytest.raises(bundle.BundleError, match="META"):
            nb.meta()
        assert nb.bucket_names() == ["r1.0", "r0.75", "r0.5"]  # the binary tables do not need it


def test_bundle_struct_mirror_is_the_core_size():
    import ctypes

    assert native.lib().inn_bundle_sizeof() == ctypes.sizeof(native._Bundle)  # noqa: SLF001


def test_writer_refuses_what_the_readers_reject():
    def refused(edit, match):
        b = bundle.load(VECTORS / "vectors.innb")
        edit(b)
        with pytest.raises(ValueError, match=match):
            bundle.encode(b)

    refused(lambda b: b.meta.update(score=float("nan")), "strict JSON")
    refused(lambda b: b.buckets[0].info["runtimes"]["vectors"].update(accuracy=float("inf")), "not a finite number")
    refused(lambda b: b.buckets[1].info["runtimes"]["vectors"].update(weights_bytes=-1), "not a byte count")
    refused(lambda b: b.buckets[1].info["runtimes"]["vectors"].update(file_bytes=1 << 64), "not a byte count")
    refused(lambda b: b.buckets[1].info["runtimes"].update({"x" * 17: {}}), "runtime name")
    refused(lambda b: setattr(b.buckets[2], "ratio", float("nan")), "ratio nan is not finite")

    def upsample(b):
        g = next(g for g in b.model.groups if g.resizable)
        b.buckets[0].sizes[g.id] = g.size * 16 + 1
    refused(upsample, "at most 16 per node")


def _vm_rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def _mapping_rss_kib(path: Path) -> int:
    """Resident KiB of this process's mappings of ``path`` (``/proc/self/smaps``)."""
    rss, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):
                inside = line.rstrip().endswith(str(path))
            elif inside and line.startswith("Rss:"):
                rss += int(line.split()[1])
    return rss


def test_open_and_fill_of_a_mapped_bundle_drop_each_stretch_once_read(tmp_path):
    """A mapped bundle leaves memory as the core is done with it, so memory never holds the whole file, nor all
    the nodes and all the filled weights at once: the open drops each stretch it has verified and leaves the
    nodes to the fill (``inn_bundle_open_deferred``), which checks and writes them in finer parts, each part's
    node pages dropped once it is written (``inn_graph_part_nodes``). After either, little more than the pages
    at stretch and part boundaries is resident (2 MiB each where the page cache maps the file in huge pages:
    dropping part of one unmaps it all, and the next read maps it again). The bytes are those of the
    reference, with 1 or 2 threads; a bundle in memory is left alone. A NaN node far past the first stretch is
    still found: by the fill of a mapped bundle (whose open does not read the nodes), by the open of bytes."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
    from make_test_vectors import graph_images

    torch.manual_seed(0)
    im = convert(torch.nn.Sequential(*[torch.nn.Linear(512, 512) for _ in range(16)]), torch.randn(2, 512))
    b = bundle.Bundle(im, bundle.make_buckets(im, [1.0]))
    b.graphs[(0, "vectors")] = runtime_file.encode_record(graph_images(b, 0, torch.Generator().manual_seed(1)))
    path = tmp_path / "big.innb"
    bundle.save(b, path)
    want = reference.fill(b, 0, "vectors")
    node_kib = sum(t.numel() for t in im.nodes.values()) * 4 / 1024
    for threads in (1, 2):
        nb = native.NativeBundle.from_file(path)  # open checks all but the nodes, dropping each stretch
        others = (path.stat().st_size / 1024 - node_kib) + 2 * 2048 * threads  # < half the nodes
        assert _mapping_rss_kib(path) < others, (_mapping_rss_kib(path), node_kib)
        assert nb.fill(0, "vectors", threads=threads) == want
        assert _mapping_rss_kib(path) < others, (threads, _mapping_rss_kib(path), node_kib)
    in_memory = native.NativeBundle(path.read_bytes())
    assert in_memory.fill(0, "vectors") == want
    data = bytearray(path.read_bytes())
    struct.pack_into("<f", data, section(bytes(data), b"NODE") + int(node_kib - 1) * 1024, float("nan"))
    path.write_bytes(reseal(data))
    with pytest.raises(native.NativeError, match="FORMAT"):
        native.NativeBundle.from_file(path).fill(0, "vectors", threads=2)
    with pytest.raises(native.NativeError, match="FORMAT"):
        native.NativeBundle(path.read_bytes())


@pytest.mark.parametrize("threads", [1, 2])
def test_a_mapped_bundle_checks_its_nodes_in_the_fill_and_returns_nothing_made_from_bad_ones(tmp_path, threads):
    """``from_file`` leaves the node section's checksum to the first fill (``inn_bundle_open_deferred``), which
    checks it on its threads as it reads the nodes: the same bytes as the eager open's fill, a flipped node
    byte anywhere fails the fill with the open's CHECKSUM (and every later read of the nodes: materialise, the
    NODE section), and once a fill has verified the nodes, everything reads them as from an eager open."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
    from make_test_vectors import graph_images

    torch.manual_seed(0)
    im = convert(torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.ReLU(), torch.nn.Linear(96, 32)),
                 torch.randn(2, 64))
    b = bundle.Bundle(im, bundle.make_buckets(im, [0.5, 1.0]))
    b.graphs[(1, "vectors")] = runtime_file.encode_record(graph_images(b, 1, torch.Generator().manual_seed(1)))
    path = tmp_path / "b.innb"
    bundle.save(b, path)
    eager = native.NativeBundle(path.read_bytes())
    want = eager.fill(1, "vectors")
    nb = native.NativeBundle.from_file(path)
    assert nb.fill(1, "vectors", threads=threads) == want
    assert nb.section(b"NODE") == eager.section(b"NODE")
    assert np.array_equal(nb.materialize(0, 1)[0], eager.materialize(0, 1)[0])
    nb = native.NativeBundle.from_file(path)  # first reads from several threads at once: each verifies or waits
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda k: nb.fill(1, "vectors", threads=threads) if k % 2 else nb.materialize(0, 1)[0],
                            range(8)))
    assert all(g == want for g in got[1::2]) and all(np.array_equal(g, got[0]) for g in got[::2])
    data = bytearray(path.read_bytes())
    nodes = section(bytes(data), b"NODE")
    for at in (nodes, nodes + 1000, nodes + len(eager.section(b"NODE")) - 1):
        bad = bytearray(data)
        bad[at] ^= 0x04
        path.write_bytes(bad)
        with pytest.raises(native.NativeError, match="CHECKSUM"):
            native.NativeBundle(bytes(bad))
        nb = native.NativeBundle.from_file(path)  # opens: the nodes are not read yet
        with pytest.raises(native.NativeError, match="CHECKSUM"):
            nb.fill(1, "vectors", threads=threads)
        with pytest.raises(native.NativeError, match="CHECKSUM"):
            nb.materialize(0, 0)
        with pytest.raises(native.NativeError, match="CHECKSUM"):
            nb.section(b"NODE")


def test_released_pages_of_a_mapped_bundle_leave_memory_and_read_back_unchanged(tmp_path):
    """``release_pages`` (what a loader calls between the fill and the runtime's load) drops the mapped
    file's pages from this process: RSS falls by about the file, and the next fill reads the same nodes
    back. A bundle opened from bytes is the caller's memory and is left alone."""
    torch.manual_seed(0)
    im = convert(torch.nn.Sequential(torch.nn.Linear(1024, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 1024)),
                 torch.randn(2, 1024))
    path = tmp_path / "big.innb"
    b = bundle.Bundle(im, bundle.make_buckets(im, [0.5, 1.0]))
    size = bundle.save(b, path)
    nb = native.NativeBundle.from_file(path)  # open reads every byte (checksums): the pages are resident
    want = [nb.materialize(1, layer)[0] for layer in range(nb.layer_count)]
    before = _vm_rss_kib()
    nb.release_pages()
    assert before - _vm_rss_kib() > 0.75 * size / 1024, (before, _vm_rss_kib(), size)
    for layer, w in enumerate(want):
        np.testing.assert_array_equal(nb.materialize(1, layer)[0], w)
    data = path.read_bytes()
    in_memory = native.NativeBundle(data)
    in_memory.release_pages()
    np.testing.assert_array_equal(in_memory.materialize(1, 0)[0], want[0])
