package dev.innmobile.host;

import dev.innmobile.Cascade;
import dev.innmobile.InnBundle;
import dev.innmobile.InnException;
import dev.innmobile.WidthCache;
import dev.innmobile.WidthPolicy;
import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.zip.CRC32;

/**
 * The JVM test of the app's native layer: the shipped Java facade (dev.innmobile) over the shipped
 * JNI glue and C core, built for the host by build_and_test.sh. No JUnit (no Maven here): each mode
 * prints one result line per check that tests/test_android_host.py asserts on, and exits non-zero
 * when a check fails.
 *
 * <pre>
 *   selftest BUNDLE EXPECTED [EXPECTED_GRAPHS RUNTIME]  vectors (+ graphvectors) + corrupt (build_and_test.sh)
 *   vectors  BUNDLE EXPECTED     every (bucket, layer, layout, dtype) of EXPECTED (Python reference) byte-equal
 *   graphvectors BUNDLE EXPECTED_GRAPHS RUNTIME  every filled graph image byte-equal to Bundle.fill (Python)
 *   corrupt  BUNDLE [SEED]       truncations and bit flips: InnException or success, never anything else
 *   open     FILE...             one line per file: "OK ..." or "InnException STATUS MESSAGE"
 *   dump     BUNDLE DIR                       every bucket/layout/dtype/layer's weight, scales, bias as raw files
 *   graph    BUNDLE BUCKET RUNTIME DIR        the filled runtime files of one graph
 *   cache    BUNDLE BUCKET RUNTIME CACHE_DIR [background]  WidthCache.open: "cache: hit|stored|storing|not
 *                                         stored: ...", then one "cache file NAME SIZE CRC32" line per file it
 *                                         hands out; with background (an executor writes a new entry, the
 *                                         bundle closed meanwhile) then "cache kept: stored|not stored: ..."
 *   mapped   BUNDLE BUCKET RUNTIME THREADS DIR  a mapped bundle's nodes, checked by the first read: fill then
 *                                         read, read then fill, and 8 threads at once; one line per read
 *   policy   BUNDLE RUNTIME BUDGET_BYTES [LATENCY_MS|- [PROFILE_RUNTIME [BUCKET=LATENCY_MS:PEAK_BYTES...]]]
 *                                         the bucket WidthPolicy picks (with a device profile of those rows)
 *   costs    BUNDLE                       every bucket's name and ratio, every cost row, one per line
 *   cascade-policy BUNDLE RUNTIME BUDGET_BYTES TOLERANCE  policy with the cascades as candidates
 *   cascades BUNDLE [LOGITS...]           every bucket's MACs, every cascade, and each LOGITS' (comma-separated)
 *                                         confidences and the step each cascade answers it at (all steps same)
 * </pre>
 */
public final class HostTest {
    private HostTest() {}

    public static void main(String[] args) throws IOException {
        if (args.length < 2) {
            usage();
        }
        boolean ok;
        switch (args[0]) {
            case "selftest":
                ok = vectors(new File(args[1]), new File(args[2]));
                if (args.length > 4) {
                    ok &= graphVectors(new File(args[1]), new File(args[3]), args[4]);
                }
                ok &= corrupt(Files.readAllBytes(new File(args[1]).toPath()), 1);
                break;
            case "graphvectors":
                ok = graphVectors(new File(args[1]), new File(args[2]), args[3]);
                break;
            case "vectors":
                ok = vectors(new File(args[1]), new File(args[2]));
                break;
            case "corrupt":
                ok = corrupt(Files.readAllBytes(new File(args[1]).toPath()), args.length > 2 ? Long.parseLong(args[2]) : 1);
                break;
            case "open":
                ok = true;
                for (int i = 1; i < args.length; i++) {
                    System.out.println(openLine(Files.readAllBytes(new File(args[i]).toPath())));
                }
                break;
            case "dump":
                ok = dump(new File(args[1]), new File(args[2]));
                break;
            case "graph":
                ok = graph(new File(args[1]), Integer.parseInt(args[2]), args[3], new File(args[4]));
                break;
            case "cache":
                ok = cache(new File(args[1]), Integer.parseInt(args[2]), args[3], new File(args[4]),
                           args.length > 5 && args[5].equals("background"));
                break;
            case "mapped":
                ok = mapped(new File(args[1]), Integer.parseInt(args[2]), args[3], Integer.parseInt(args[4]),
                            new File(args[5]));
                break;
            case "policy":
                ok = policy(new File(args[1]), args[2], Long.parseLong(args[3]),
                            args.length > 4 && !args[4].equals("-") ? Double.parseDouble(args[4]) : Double.NaN,
                            args.length > 5 ? profile(Arrays.copyOfRange(args, 5, args.length)) : null);
                break;
            case "cascade-policy":
                ok = cascadePolicy(new File(args[1]), args[2], Long.parseLong(args[3]), Double.parseDouble(args[4]));
                break;
            case "cascades":
                ok = cascades(new File(args[1]), Arrays.copyOfRange(args, 2, args.length));
                break;
            case "costs":
                ok = costs(new File(args[1]));
                break;
            default:
                usage();
                return;
        }
        System.exit(ok ? 0 : 1);
    }

    private static void usage() {
        System.err.println("usage: HostTest selftest|vectors|corrupt|open|dump|graph|cache|policy|cascade-policy|costs|cascades ... (see the class comment)");
        System.exit(2);
    }

    // ------------------------------------------------------------------ vectors: bytes equal the Python reference

    /** expected.bin (tools/make_test_vectors.py): u32 bucket, layer, layout, dtype, then 3 x (u64 n, n bytes). */
    static boolean vectors(File bundleFile, File expectedFile) throws IOException {
        ByteBuffer exp = ByteBuffer.wrap(Files.readAllBytes(expectedFile.toPath())).order(ByteOrder.LITTLE_ENDIAN);
        int records = 0, bad = 0;
        try (InnBundle b = InnBundle.open(bundleFile)) { // memory-mapped: the in-place path
            System.out.printf("mapped file read in place: %b%n", b.inPlace());
            if (!b.inPlace()) {
                bad++;
            }
            ByteBuffer[] scratch = new ByteBuffer[b.bucketCount];
            while (exp.hasRemaining()) {
                int bucket = exp.getInt(), layer = exp.getInt(), layout = exp.getInt(), dtype = exp.getInt();
                byte[] w = chunk(exp), s = chunk(exp), bias = chunk(exp);
                if (scratch[bucket] == null) {
                    scratch[bucket] = b.newScratch(bucket);
                }
                InnBundle.Weights got = b.materialize(bucket, layer, InnBundle.Layout.values()[layout],
                                                      InnBundle.DType.values()[dtype], scratch[bucket]);
                boolean same = Arrays.equals(w, bytes(got.weight)) && Arrays.equals(s, bytes(got.scales))
                        && Arrays.equals(bias, bytes(got.bias));
                records++;
                if (!same) {
                    bad++;
                    System.out.printf("MISMATCH bucket %d layer %d (%s) layout %d dtype %d%n", bucket, layer,
                                      got.info.name, layout, dtype);
                }
            }
        }
        System.out.printf("vectors: %d records, %d mismatched%n", records, bad);
        return records > 0 && bad == 0;
    }

    /** expected_graphs.bin (tools/make_test_vectors.py): u32 bucket, u32 image index, u64 n, n bytes. */
    static boolean graphVectors(File bundleFile, File expectedFile, String runtime) throws IOException {
        ByteBuffer exp = ByteBuffer.wrap(Files.readAllBytes(expectedFile.toPath())).order(ByteOrder.LITTLE_ENDIAN);
        int images = 0, bad = 0;
        try (InnBundle b = InnBundle.open(bundleFile)) {
            Map<Integer, ByteBuffer[]> filled = new TreeMap<>();
            while (exp.hasRemaining()) {
                int bucket = exp.getInt(), index = exp.getInt();
                byte[] want = chunk(exp);
                images++;
                for (int threads : new int[] {1, 3}) { // one part, and several parts on threads at once
                    ByteBuffer[] files = filled.computeIfAbsent(bucket * 8 + threads, k -> fill(b, bucket, runtime, threads));
                    b.releasePages(); // the next fill reads the nodes back from the file
                    if (!Arrays.equals(want, bytes(files[index]))) {
                        bad++;
                        System.out.printf("MISMATCH graph image %d of bucket %d (%d threads)%n", index, bucket, threads);
                    }
                }
            }
        }
        System.out.printf("graph vectors: %d images, %d mismatched%n", images, bad);
        return images > 0 && bad == 0;
    }

    /** The graph's files written with {@code threads} scratch buffers, so in that many parts at once. */
    private static ByteBuffer[] fill(InnBundle b, int bucket, String runtime, int threads) {
        List<InnBundle.GraphImage> images = b.graphImages(bucket, runtime);
        ByteBuffer[] outs = new ByteBuffer[images.size()];
        for (int i = 0; i < outs.length; i++) {
            outs[i] = ByteBuffer.allocateDirect((int) images.get(i).size);
        }
        ByteBuffer[] scratch = new ByteBuffer[threads];
        for (int p = 0; p < threads; p++) {
            scratch[p] = ByteBuffer.allocateDirect((int) b.graphScratchBytes(bucket, runtime));
        }
        b.fillGraph(bucket, runtime, outs, scratch);
        return outs;
    }

    private static byte[] chunk(ByteBuffer in) {
        byte[] out = new byte[(int) in.getLong()];
        in.get(out);
        return out;
    }

    static byte[] bytes(ByteBuffer b) {
        if (b == null) {
            return new byte[0];
        }
        byte[] out = new byte[b.capacity()];
        b.duplicate().clear().get(out);
        return out;
    }

    // ------------------------------------------------------------------ corrupt bytes: exceptions, never crashes

    /** Opens and uses the bundle's bytes; returns "OK ..." or "InnException STATUS MESSAGE". Other exceptions propagate. */
    static String openLine(byte[] data) {
        try {
            return "OK " + exercise(data, false);
        } catch (InnException e) {
            return "InnException " + e.statusName() + " " + e.getMessage();
        }
    }

    /**
     * Everything the app does with a bundle: open (through a byte[] or a direct buffer, both JNI
     * paths), read META, materialise every layer of every bucket in every layout and dtype, fill
     * every graph. Returns a short description of what it did.
     */
    static String exercise(byte[] data, boolean direct) {
        InnBundle b;
        if (direct) {
            ByteBuffer buf = ByteBuffer.allocateDirect(data.length);
            buf.put(data).flip();
            b = InnBundle.open(buf);
        } else {
            b = InnBundle.open(data);
        }
        try (InnBundle bundle = b) {
            bundle.meta();
            int layers = 0;
            for (int k = 0; k < bundle.bucketCount; k++) {
                ByteBuffer scratch = bundle.newScratch(k);
                for (int layer = 0; layer < bundle.layerCount; layer++) {
                    for (InnBundle.Layout layout : InnBundle.Layout.values()) {
                        for (InnBundle.DType dtype : InnBundle.DType.values()) {
                            if (dtype == InnBundle.DType.I8 && bundle.layerInfo(k, layer).kind == 3) {
                                continue; // affine layers are float only
                            }
                            bundle.materialize(k, layer, layout, dtype, scratch);
                        }
                    }
                    layers++;
                }
            }
            List<InnBundle.Graph> graphs = bundle.graphs();
            for (InnBundle.Graph g : graphs) {
                bundle.fillGraph(g.bucket, g.runtime);
            }
            return bundle.bucketCount + " buckets, " + layers + " layers materialised, " + graphs.size() + " graphs filled";
        }
    }

    /**
     * Truncations at every interesting length and single-bit flips spread over the whole file (and all
     * of the header), alternating the byte[] and direct-buffer paths. Each case must end in success (a
     * flip in padding, which no checksum covers) or an InnException; anything else fails the test, and
     * a native crash would kill the JVM before the summary line.
     */
    static boolean corrupt(byte[] good, long seed) {
        Random rnd = new Random(seed);
        Map<String, Integer> byStatus = new TreeMap<>();
        Map<String, String> example = new TreeMap<>();
        int cases = 0, opened = 0, other = 0;
        int[] cuts = {0, 1, 3, 4, 59, 60, 63, 64, 65, 127, 128, good.length / 3, good.length / 2, good.length - 65,
                      good.length - 64, good.length - 1};
        int flips = 400;
        for (int c = 0; c < cuts.length + flips + 64; c++) {
            byte[] bad;
            if (c < cuts.length) {
                bad = Arrays.copyOf(good, Math.max(0, Math.min(cuts[c], good.length - 1)));
            } else {
                bad = good.clone();
                int pos = c < cuts.length + 64 ? c - cuts.length : rnd.nextInt(good.length); // header bytes first
                bad[pos] ^= (byte) (1 << rnd.nextInt(8));
            }
            cases++;
            try {
                exercise(bad, (c & 1) == 1);
                opened++;
            } catch (InnException e) {
                byStatus.merge(e.statusName(), 1, Integer::sum);
                example.putIfAbsent(e.statusName(), e.getMessage());
            } catch (RuntimeException e) {
                other++;
                System.out.println("UNEXPECTED " + e);
            }
        }
        for (Map.Entry<String, String> e : example.entrySet()) {
            System.out.println("message " + e.getKey() + ": " + e.getValue());
        }
        System.out.printf("corrupt: %d cases, %d InnException %s, %d used without error, %d other exceptions%n", cases,
                          cases - opened - other, byStatus, opened, other);
        return other == 0 && byStatus.containsKey("TRUNCATED") && byStatus.containsKey("CHECKSUM");
    }

    // ------------------------------------------------------------------ raw outputs for the pytest to compare

    /** Every layer of every bucket in every layout and dtype, as DIR/{bucket}_{layout}_{dtype}_{layer}.{weight,scales,bias}. */
    static boolean dump(File bundleFile, File dir) throws IOException {
        dir.mkdirs();
        int files = 0;
        try (InnBundle b = InnBundle.open(Files.readAllBytes(bundleFile.toPath()))) {
            for (int k = 0; k < b.bucketCount; k++) {
                ByteBuffer scratch = b.newScratch(k);
                for (InnBundle.Layout layout : InnBundle.Layout.values()) {
                    for (InnBundle.DType dtype : InnBundle.DType.values()) {
                        for (int layer = 0; layer < b.layerCount; layer++) {
                            if (dtype == InnBundle.DType.I8 && b.layerInfo(k, layer).kind == 3) {
                                continue;
                            }
                            InnBundle.Weights w = b.materialize(k, layer, layout, dtype, scratch);
                            String stem = k + "_" + layout.name().toLowerCase(Locale.ROOT) + "_" + dtype.name().toLowerCase(Locale.ROOT) + "_" + layer;
                            files += write(dir, stem + ".weight", w.weight) + write(dir, stem + ".scales", w.scales)
                                    + write(dir, stem + ".bias", w.bias);
                        }
                    }
                }
            }
        }
        System.out.printf("dump: %d files%n", files);
        return true;
    }

    private static int write(File dir, String name, ByteBuffer data) throws IOException {
        if (data == null) {
            return 0;
        }
        Files.write(new File(dir, name).toPath(), bytes(data));
        return 1;
    }

    static boolean graph(File bundleFile, int bucket, String runtime, File dir) throws IOException {
        dir.mkdirs();
        try (InnBundle b = InnBundle.open(bundleFile)) {
            List<InnBundle.GraphImage> images = b.graphImages(bucket, runtime);
            ByteBuffer[] files = b.fillGraph(bucket, runtime);
            for (int i = 0; i < files.length; i++) {
                Files.write(new File(dir, images.get(i).name).toPath(), bytes(files[i]));
                System.out.printf("graph image %s %d bytes%n", images.get(i).name, images.get(i).size);
            }
        }
        return true;
    }

    /** One start through a {@link WidthCache}: what it did, and the files it hands out (name, size, CRC-32). */
    static boolean cache(File bundleFile, int bucket, String runtime, File dir, boolean background)
            throws IOException {
        ExecutorService writer = background ? Executors.newSingleThreadExecutor() : null;
        WidthCache.Loaded got;
        try (InnBundle b = InnBundle.open(bundleFile)) {
            WidthCache cache = new WidthCache(dir);
            got = background ? cache.open(b, bucket, runtime, writer) : cache.open(b, bucket, runtime);
            List<InnBundle.GraphImage> images = b.graphImages(bucket, runtime);
            System.out.printf("cache: %s%n", got.cache);
            for (int i = 0; i < got.buffers.length; i++) {
                CRC32 crc = new CRC32();
                crc.update(bytes(got.buffers[i]));
                System.out.printf("cache file %s %d %08x%n", images.get(i).name, got.buffers[i].capacity(),
                                  crc.getValue());
            }
        }
        if (writer != null) { // the bundle is closed: the write needs only the buffers and the stamp
            try {
                if (got.kept != null) {
                    System.out.printf("cache kept: %s%n", got.kept.get());
                }
            } catch (InterruptedException | ExecutionException e) {
                throw new IOException(e);
            } finally {
                writer.shutdown();
            }
        }
        return true;
    }

    /**
     * A bundle opened from its file leaves the nodes to the first read of them. Three fresh opens: a fill (its
     * files written to DIR/0, DIR/1, ...) then a materialisation and the NODE section; the same reads the other
     * way round; and fills and materialisations from 8 threads at once. One line per read: "fill ok", "fill
     * InnException STATUS MESSAGE", ...; the concurrent line counts the reads that gave the first open's bytes.
     */
    static boolean mapped(File bundleFile, int bucket, String runtime, int threads, File dir) throws IOException {
        dir.mkdirs();
        ByteBuffer[] first = null;
        InnBundle.Weights weights = null;
        try (InnBundle b = InnBundle.open(bundleFile)) {
            first = read(() -> fill(b, bucket, runtime, threads), "fill");
            if (first != null) {
                for (int i = 0; i < first.length; i++) {
                    Files.write(new File(dir, Integer.toString(i)).toPath(), bytes(first[i]));
                }
            }
            weights = read(() -> firstWeights(b), "materialize");
            read(() -> b.section("NODE"), "section");
        }
        try (InnBundle b = InnBundle.open(bundleFile)) {
            read(() -> b.section("NODE"), "section");
            read(() -> firstWeights(b), "materialize");
            read(() -> fill(b, bucket, runtime, threads), "fill");
        }
        if (first == null || weights == null) {
            return true;
        }
        final byte[] want = bytes(first), wantWeight = bytes(weights.weight);
        try (InnBundle b = InnBundle.open(bundleFile)) {
            Object[] got = new Object[8];
            Thread[] workers = new Thread[got.length];
            for (int t = 0; t < got.length; t++) {
                final int k = t;
                workers[t] = new Thread(() -> {
                    try {
                        got[k] = k % 2 == 1 ? fill(b, bucket, runtime, threads) : firstWeights(b);
                    } catch (RuntimeException e) {
                        got[k] = e;
                    }
                });
                workers[t].start();
            }
            int same = 0;
            for (int t = 0; t < got.length; t++) {
                while (workers[t].isAlive()) {
                    try {
                        workers[t].join();
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        return false;
                    }
                }
                if (got[t] instanceof ByteBuffer[] && Arrays.equals(want, bytes((ByteBuffer[]) got[t]))
                        || got[t] instanceof InnBundle.Weights
                           && Arrays.equals(wantWeight, bytes(((InnBundle.Weights) got[t]).weight))) {
                    same++;
                }
            }
            System.out.printf("concurrent %d of %d reads good%n", same, got.length);
        }
        return true;
    }

    /** Layer 0 of bucket 0 as float32 [O][I][T]: a read of the nodes outside a fill. */
    private static InnBundle.Weights firstWeights(InnBundle b) {
        return b.materialize(0, 0, InnBundle.Layout.OIT, InnBundle.DType.F32, b.newScratch(0));
    }

    /** Runs one read of a mapped bundle and prints "WHAT ok" or "WHAT InnException STATUS MESSAGE". */
    private static <T> T read(java.util.function.Supplier<T> what, String name) {
        try {
            T out = what.get();
            System.out.printf("%s ok%n", name);
            return out;
        } catch (InnException e) {
            System.out.printf("%s InnException %s %s%n", name, e.statusName(), e.getMessage());
            return null;
        }
    }

    private static byte[] bytes(ByteBuffer[] files) {
        java.io.ByteArrayOutputStream all = new java.io.ByteArrayOutputStream();
        for (ByteBuffer f : files) {
            all.writeBytes(bytes(f));
        }
        return all.toByteArray();
    }

    /** A profile from {@code RUNTIME BUCKET=LATENCY_MS:PEAK_BYTES...} (what an app parses from its own storage). */
    static WidthPolicy.Profile profile(String[] args) {
        WidthPolicy.Profile p = new WidthPolicy.Profile(args[0]);
        for (int i = 1; i < args.length; i++) {
            int eq = args[i].lastIndexOf('='), colon = args[i].lastIndexOf(':');
            p.put(args[i].substring(0, eq), Double.parseDouble(args[i].substring(eq + 1, colon)),
                  Long.parseLong(args[i].substring(colon + 1)));
        }
        return p;
    }

    /** Prints "chosen INDEX BUCKET NAME | REASON" or "NoWidthFits MESSAGE" / "Invalid MESSAGE" (policy.py's errors). */
    static boolean policy(File bundleFile, String runtime, long budget, double latencyMs, WidthPolicy.Profile profile)
            throws IOException {
        try (InnBundle b = InnBundle.open(bundleFile)) {
            WidthPolicy.Choice c = WidthPolicy.choose(WidthPolicy.candidates(b, runtime, profile), budget, latencyMs);
            System.out.printf("chosen %d %d %s | %s%n", c.index, c.candidate.bucket, c.candidate.name, c.reason);
        } catch (WidthPolicy.NoWidthFits e) {
            System.out.println("NoWidthFits " + e.getMessage());
        } catch (IllegalArgumentException e) {
            System.out.println("Invalid " + e.getMessage());
        }
        return true;
    }

    /** Like {@link #policy} with the bundle's cascades as candidates and an accuracy tolerance (no profile). */
    static boolean cascadePolicy(File bundleFile, String runtime, long budget, double tolerance) throws IOException {
        try (InnBundle b = InnBundle.open(bundleFile)) {
            WidthPolicy.Choice c = WidthPolicy.choose(WidthPolicy.candidates(b, runtime, null, true), budget,
                                                      Double.NaN, tolerance);
            System.out.printf("chosen %d %s %s | %s%n", c.index, c.candidate.name, c.candidate.cascade, c.reason);
        } catch (WidthPolicy.NoWidthFits e) {
            System.out.println("NoWidthFits " + e.getMessage());
        } catch (IllegalArgumentException e) {
            System.out.println("Invalid " + e.getMessage());
        }
        return true;
    }

    /**
     * "bucket K NAME RATIO" per bucket, then "cost BUCKET RUNTIME KNOWN WEIGHTS FILE ARENA ACCURACY" per row
     * (doubles as Java prints them; what the pytest compares with the Python decoder).
     */
    static boolean costs(File bundleFile) throws IOException {
        try (InnBundle b = InnBundle.open(bundleFile)) {
            for (int k = 0; k < b.bucketCount; k++) {
                InnBundle.BucketInfo info = b.bucketInfo(k);
                System.out.println("bucket " + k + " " + info.name + " " + info.ratio);
            }
            for (InnBundle.Cost c : b.costs()) {
                InnBundle.Cost found = b.cost(c.bucket, c.runtime);
                boolean same = found != null && found.known == c.known && found.weightsBytes == c.weightsBytes
                        && found.fileBytes == c.fileBytes && found.arenaBytes == c.arenaBytes
                        && found.accuracy == c.accuracy;
                System.out.println("cost " + c.bucket + " " + c.runtime + " " + c.known + " " + c.weightsBytes + " "
                                   + c.fileBytes + " " + c.arenaBytes + " " + c.accuracy + (same ? "" : " NOT FOUND"));
            }
        }
        return true;
    }

    /**
     * "macs K VALUE" per bucket; "cascade NAME SCORE TARGET KNOWN TARGET_VALUE ACCURACY MEAN_MACS B:T,B:T..." per
     * cascade; per LOGITS "confidence I MAX_PROB MARGIN" and "step I NAME S MACS" per cascade: the step whose
     * answer stands when every step gives these logits (what the pytest compares with the Python reader).
     */
    static boolean cascades(File bundleFile, String[] logits) throws IOException {
        try (InnBundle b = InnBundle.open(bundleFile)) {
            for (int k = 0; k < b.bucketCount; k++) System.out.println("macs " + k + " " + b.macs(k));
            List<Cascade> all = b.cascades();
            for (Cascade c : all) {
                StringBuilder steps = new StringBuilder();
                for (int j = 0; j < c.steps(); j++) {
                    steps.append(j == 0 ? "" : ",").append(c.buckets[j]).append(':').append(c.thresholds[j]);
                }
                System.out.println("cascade " + c.name + " " + c.score + " " + c.target + " " + c.known + " "
                                   + c.targetValue + " " + c.accuracy + " " + c.meanMacs + " " + steps);
            }
            for (int i = 0; i < logits.length; i++) {
                String[] parts = logits[i].split(",");
                float[] z = new float[parts.length];
                for (int j = 0; j < z.length; j++) z[j] = Float.parseFloat(parts[j]);
                System.out.println("confidence " + i + " " + Cascade.confidence(z, Cascade.MAX_PROB) + " "
                                   + Cascade.confidence(z, Cascade.MARGIN));
                for (Cascade c : all) {
                    int step = 0;
                    while (!c.accepts(step, z)) step++;
                    System.out.println("step " + i + " " + c.name + " " + step + " " + c.macsUpTo(step));
                }
            }
        }
        return true;
    }
}
