package dev.innmobile;

import java.io.File;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * An {@code .innb} bundle opened by the native core (libinn_jni: inn_mobile/csrc + inn_jni.c).
 *
 * <p>Plain Java (no {@code android.*}), so the very class the app ships is compiled and tested on a
 * host JVM in CI. The core validates the whole bundle once in {@link #open}; afterwards weights are
 * materialised on demand, one layer at a time, straight into direct {@link ByteBuffer}s (no weight
 * is ever held twice). Every core failure is an {@link InnException} with the core's message.
 *
 * <p>Not thread-safe to {@link #close} while another thread materialises; concurrent
 * {@code materialize} calls are fine if each thread uses its own scratch buffer (the core has no
 * global state and only reads the bundle).
 */
public final class InnBundle implements AutoCloseable {
    static {
        System.loadLibrary("inn_jni");
    }

    /** Output layouts; the ordinal is the core's {@code inn_layout} code. */
    public enum Layout {
        /** [O][I][T]: PyTorch OIHW, Linear [O, I]. */
        OIT,
        /** [O][T][I]: OHWI (LiteRT conv, XNNPACK NHWC). */
        OTI,
        /** [I][T][O]: LiteRT depthwise [1, H, W, O]; transposed linear [I, O]. */
        ITO
    }

    /** Weight element types; the ordinal is the core's {@code inn_dtype} code. */
    public enum DType {
        F32,
        /** Symmetric int8 per output channel, with float32 scales. */
        I8
    }

    /** One layer's tensors, little-endian direct buffers ready for a runtime. */
    public static final class Weights {
        public final LayerInfo info;
        public final ByteBuffer weight;
        /** int8 per-output-channel scales (float32), or null for float weights. */
        public final ByteBuffer scales;
        /** Bias (affine layers: the shift), float32, or null when the layer has none. */
        public final ByteBuffer bias;

        Weights(LayerInfo info, ByteBuffer weight, ByteBuffer scales, ByteBuffer bias) {
            this.info = info;
            this.weight = weight;
            this.scales = scales;
            this.bias = bias;
        }
    }

    /** A runtime graph the bundle ships for one bucket (e.g. runtime "litert" or "executorch"). */
    public static final class Graph {
        public final int bucket;
        public final String runtime;

        Graph(int bucket, String runtime) {
            this.bucket = bucket;
            this.runtime = runtime;
        }

        @Override
        public String toString() {
            return runtime + "@" + bucket;
        }
    }

    /** A bucket's name (from the bundle's binary tables) and the global width it was made for. */
    public static final class BucketInfo {
        public final int bucket;
        /** "b" + index when the bundle predates bucket names in binary (format 1.2). */
        public final String name;
        /** The width ratio (0.5: half the channels), or NaN when not set. */
        public final double ratio;

        BucketInfo(int bucket, String name, double ratio) {
            this.bucket = bucket;
            this.name = name;
            this.ratio = ratio;
        }
    }

    /**
     * What one bucket costs and gives on one runtime, measured when the bundle was packed (a COST row):
     * what {@link WidthPolicy} chooses from. A field whose flag is not in {@link #known} was not measured.
     */
    public static final class Cost {
        /** Flags of {@link #known}: the core's {@code INN_COST_*}. */
        public static final int WEIGHTS_BYTES = 1;
        public static final int FILE_BYTES = 2;
        public static final int ARENA_BYTES = 4;
        public static final int ACCURACY = 8;

        public final int bucket;
        public final String runtime;
        public final int known;
        /** Bytes of the weights the core writes into the runtime's files. */
        public final long weightsBytes;
        /** Bytes of the runtime's files without their weights. */
        public final long fileBytes;
        /** The runtime's activation memory. */
        public final long arenaBytes;
        /** Percent, on the packer's validation data. */
        public final double accuracy;

        Cost(String runtime, long[] v) {
            this.bucket = (int) v[0];
            this.runtime = runtime;
            this.known = (int) v[1];
            this.weightsBytes = v[2];
            this.fileBytes = v[3];
            this.arenaBytes = v[4];
            this.accuracy = Double.longBitsToDouble(v[5]);
        }

        public boolean has(int field) {
            return (known & field) != 0;
        }
    }

    /** One file of a graph (".tflite", or ".pte" / ".ptd") and its complete size. */
    public static final class GraphImage {
        public final String name;
        public final long size;

        GraphImage(String name, long size) {
            this.name = name;
            this.size = size;
        }
    }

    private long handle;
    /** Read in place from a read-only memory-mapped file: its pages can be dropped and read back (releasePages). */
    private final boolean fileMapped;

    public final int bucketCount;
    public final int layerCount;
    public final int groupCount;

    private InnBundle(long handle, boolean fileMapped) {
        this.handle = handle;
        this.fileMapped = fileMapped;
        int[] c = nCounts(handle);
        bucketCount = c[0];
        layerCount = c[1];
        groupCount = c[2];
    }

    /**
     * Opens the bytes between {@code data}'s position and limit. A direct buffer (e.g. a memory-mapped
     * file or asset) is read in place when 8-byte aligned: no copy, and the native handle holds a global
     * reference to it until {@link #close}, so the mapping lives exactly as long as the bundle. Its contents
     * must not change while the bundle is open. A misaligned direct buffer, or a heap buffer, is copied once.
     */
    public static InnBundle open(ByteBuffer data) {
        Objects.requireNonNull(data, "data");
        if (data.isDirect()) {
            boolean fileMapped = data instanceof MappedByteBuffer && data.isReadOnly();
            return new InnBundle(nOpenDirect(data.slice(), fileMapped), fileMapped);
        }
        if (data.hasArray()) {
            return new InnBundle(nOpenArray(data.array(), data.arrayOffset() + data.position(), data.remaining()),
                                 false);
        }
        byte[] copy = new byte[data.remaining()];
        data.duplicate().get(copy);
        return open(copy);
    }

    /** Opens a copy of {@code data}. */
    public static InnBundle open(byte[] data) {
        Objects.requireNonNull(data, "data");
        return new InnBundle(nOpenArray(data, 0, data.length), false);
    }

    /**
     * Memory-maps {@code file} read-only and opens it in place: the core validates and reads the mapped pages
     * (shared with the page cache), so the process never holds a second copy of the file, in Java or native;
     * each stretch it has verified is dropped from memory at once, so the open never holds the whole file.
     * The nodes (most of the file) are not read by the open: the first {@link #fillGraph} checks them on its
     * threads as it reads them anyway, and throws the open's {@link InnException} (CHECKSUM, FORMAT) before
     * returning if one is bad; anything else that reads them ({@link #materialize}, the NODE section) checks
     * them first. The same guarantee as a full check at open: nothing made from a bad node is returned.
     */
    public static InnBundle open(File file) throws IOException {
        try (RandomAccessFile raf = new RandomAccessFile(file, "r"); FileChannel ch = raf.getChannel()) {
            return open(ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size())); // the mapping outlives the channel
        }
    }

    /** Whether the bundle is read in place from the caller's memory (a mapped file: true), not from a copy. */
    public boolean inPlace() {
        return nInPlace(live());
    }

    /**
     * Drops this process's resident pages of a bundle read in place from a read-only memory-mapped file
     * ({@link #open(File)}, or a read-only {@link MappedByteBuffer}); the page cache keeps the file and the
     * core's next read faults the pages back in, unchanged. A no-op for any other bundle. Call it after
     * {@link #fillGraph(int, String)} and before the runtime loads the files: the runtime then makes its own
     * copy of the weights, and peak memory need not also hold the nodes.
     */
    public void releasePages() {
        long h = live();
        if (fileMapped) {
            nReleasePages(h);
        }
    }

    private long live() {
        if (handle == 0) {
            throw new IllegalStateException("InnBundle is closed");
        }
        return handle;
    }

    public LayerInfo layerInfo(int bucket, int layer) {
        long[] v = new long[9];
        byte[] name = nLayerInfo(live(), bucket, layer, v);
        String s = name.length == 0 ? "layer" + layer : new String(name, StandardCharsets.UTF_8);
        return new LayerInfo(s, v);
    }

    /** The payload of section {@code tag} (4 ASCII characters, e.g. "META"), or null if absent. */
    public byte[] section(String tag) {
        byte[] t = tag.getBytes(StandardCharsets.US_ASCII);
        if (t.length != 4) {
            throw new IllegalArgumentException("section tags have 4 characters: " + tag);
        }
        return nSection(live(), t);
    }

    /**
     * The bundle's META JSON, or "{}" when it has none: informational (what a host needs to rebuild the
     * model in torch); everything a device needs is in the binary tables ({@link #bucketInfo}, {@link #cost}).
     */
    public String meta() {
        byte[] m = section("META");
        return m == null ? "{}" : new String(m, StandardCharsets.UTF_8);
    }

    /** Bytes of scratch {@link #materialize} needs for any layer of {@code bucket}. */
    public long scratchBytes(int bucket) {
        return nScratchSize(live(), bucket);
    }

    /** A scratch buffer for {@code bucket}: allocate once, reuse for every layer. */
    public ByteBuffer newScratch(int bucket) {
        return direct(scratchBytes(bucket));
    }

    /**
     * Writes one layer of one bucket into caller buffers (direct, 4-byte aligned; scratch 8-byte
     * aligned; whole capacity used, position ignored). {@code scales} is required for I8,
     * {@code bias} may be null.
     */
    public void materialize(int bucket, int layer, Layout layout, DType dtype, ByteBuffer weight, ByteBuffer scales,
                            ByteBuffer bias, ByteBuffer scratch) {
        Objects.requireNonNull(weight, "weight");
        Objects.requireNonNull(scratch, "scratch");
        nMaterialize(live(), bucket, layer, layout.ordinal(), dtype.ordinal(), weight, scales, bias, scratch);
    }

    /** One layer of one bucket in newly allocated buffers sized from {@link #layerInfo}. */
    public Weights materialize(int bucket, int layer, Layout layout, DType dtype, ByteBuffer scratch) {
        LayerInfo info = layerInfo(bucket, layer);
        boolean i8 = dtype == DType.I8;
        ByteBuffer w = direct(info.weightCount * (i8 ? 1 : 4));
        ByteBuffer s = i8 ? direct(4L * info.nOut) : null;
        ByteBuffer b = info.hasVector() ? direct(4L * info.nOut) : null;
        materialize(bucket, layer, layout, dtype, w, s, b, scratch);
        return new Weights(info, w, s, b);
    }

    // ------------------------------------------------------------------ what a width costs

    public BucketInfo bucketInfo(int bucket) {
        double[] ratio = new double[1];
        byte[] name = nBucketInfo(live(), bucket, ratio);
        return new BucketInfo(bucket, name.length == 0 ? "b" + bucket : new String(name, StandardCharsets.UTF_8),
                              ratio[0]);
    }

    /** Every cost row of the bundle, sorted by (bucket, runtime); empty for bundles before format 1.3. */
    public List<Cost> costs() {
        int n = nCostCount(live());
        List<Cost> out = new ArrayList<>(n);
        long[] v = new long[6];
        for (int i = 0; i < n; i++) {
            byte[] rt = nCostRow(live(), i, v);
            out.add(new Cost(new String(rt, StandardCharsets.UTF_8), v));
        }
        return out;
    }

    /** What bucket {@code bucket} costs on {@code runtime}, or null when the bundle has no measurement. */
    public Cost cost(int bucket, String runtime) {
        long[] v = new long[6];
        return nCostFind(live(), bucket, runtime.getBytes(StandardCharsets.UTF_8), v) ? new Cost(runtime, v) : null;
    }

    // ------------------------------------------------------------------ input-adaptive width

    /** Bucket {@code bucket}'s multiply-accumulates per input (MACS), or -1 for bundles before format 1.4. */
    public long macs(int bucket) {
        return nBucketMacs(live(), bucket);
    }

    /** The bundle's confidence cascades (CSCD), in table order; empty for bundles before format 1.4. */
    public List<Cascade> cascades() {
        int n = nCascadeCount(live());
        List<Cascade> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            long[] v = new long[7];
            nCascade(live(), i, v, null, null);
            int[] buckets = new int[(int) v[2]];
            float[] thresholds = new float[buckets.length];
            byte[] name = nCascade(live(), i, v, buckets, thresholds);
            long[] macs = new long[buckets.length];
            for (int j = 0; j < buckets.length && macs != null; j++) {
                macs[j] = macs(buckets[j]);
                if (macs[j] < 0) macs = null;
            }
            out.add(new Cascade(new String(name, StandardCharsets.UTF_8), v, buckets, thresholds, macs));
        }
        return out;
    }

    // ------------------------------------------------------------------ runtime graphs

    /** Every (bucket, runtime) graph the bundle ships, in table order. */
    public List<Graph> graphs() {
        int n = nGraphCount(live());
        List<Graph> out = new ArrayList<>(n);
        int[] bucket = new int[1];
        for (int i = 0; i < n; i++) {
            byte[] rt = nGraphList(live(), i, bucket);
            out.add(new Graph(bucket[0], new String(rt, StandardCharsets.US_ASCII)));
        }
        return out;
    }

    /** The files of graph (bucket, runtime), validated by the core; InnException(MISSING) if absent. */
    public List<GraphImage> graphImages(int bucket, String runtime) {
        byte[] rt = runtime.getBytes(StandardCharsets.US_ASCII);
        int n = nGraphImageCount(live(), bucket, rt);
        List<GraphImage> out = new ArrayList<>(n);
        long[] size = new long[1];
        for (int i = 0; i < n; i++) {
            byte[] name = nGraphImage(live(), bucket, rt, i, size);
            out.add(new GraphImage(new String(name, StandardCharsets.UTF_8), size[0]));
        }
        return out;
    }

    /** Bytes of each scratch buffer {@link #fillGraph(int, String, ByteBuffer[], ByteBuffer...)} takes. */
    public long graphScratchBytes(int bucket, String runtime) {
        return nGraphScratchSize(live(), bucket, runtime.getBytes(StandardCharsets.US_ASCII));
    }

    /**
     * Rebuilds the files of graph (bucket, runtime) with the weights written from the nodes, into
     * {@code outs} (one direct, 4-byte aligned buffer per image, at least the image's size).
     *
     * <p>One scratch buffer per thread: with {@code n} buffers the layers are written by {@code n} threads
     * at once, {@code n - 1} new ones and this one (the core deals the layers to the parts by weight size
     * and starts no thread itself). Any number of parts writes the same bytes. A bundle read in place from a
     * read-only mapped file is written in finer parts ({@link #PARTS_PER_THREAD} per thread), each part's node
     * pages dropped once it is written: memory never holds every node and every filled weight at once.
     * The first fill of a mapped bundle also checks the nodes (see {@link #open(File)}): when it throws,
     * {@code outs} hold garbage.
     */
    public void fillGraph(int bucket, String runtime, ByteBuffer[] outs, ByteBuffer... scratch) {
        Objects.requireNonNull(outs, "outs");
        Objects.requireNonNull(scratch, "scratch");
        if (scratch.length == 0) {
            throw new IllegalArgumentException("fillGraph needs at least one scratch buffer");
        }
        long h = live();
        byte[] rt = runtime.getBytes(StandardCharsets.US_ASCII);
        nGraphFill(h, bucket, rt, outs, null, -1, scratch.length, false, null); // the stored bytes of every image
        int threads = scratch.length;
        int parts = fileMapped ? Math.max(threads, Math.min(layerCount, threads * PARTS_PER_THREAD)) : threads;
        // a mapped bundle's nodes are checked by its first fill: each part its share, joined below
        int[] nodeStates = nNodesPending(h) ? new int[parts] : null;
        RuntimeException[] failed = new RuntimeException[threads];
        Thread[] workers = new Thread[threads];
        for (int t = 1; t < threads; t++) {
            final int thread = t;
            workers[t] = new Thread(() -> failed[thread] = fillParts(h, bucket, rt, outs, scratch[thread], thread,
                                                                      threads, parts, fileMapped, nodeStates),
                                    "inn-fill-" + t);
            workers[t].start();
        }
        failed[0] = fillParts(h, bucket, rt, outs, scratch[0], 0, threads, parts, fileMapped, nodeStates);
        boolean interrupted = false;
        for (int p = 1; p < threads; p++) {
            while (true) {
                try {
                    workers[p].join();
                    break;
                } catch (InterruptedException e) {
                    interrupted = true; // the part writes into the caller's buffers: wait for it regardless
                }
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
        for (RuntimeException e : failed) {
            if (e != null) {
                throw e;
            }
        }
        if (nodeStates != null) {
            nNodesVerified(h, bucket, nodeStates); // throws (CHECKSUM, FORMAT) when a node was bad: outs are garbage
        }
    }

    /** Fill parts a thread writes on a mapped bundle, each part's node pages dropped once written. */
    public static final int PARTS_PER_THREAD = 8;

    /**
     * Thread {@code t} of {@code threads}: parts [t * parts / threads, (t + 1) * parts / threads), in order,
     * each one's node pages dropped once written when {@code release} (a read-only file mapping only), and
     * with {@code nodeStates} each one's share of the nodes checked first, its checksum state left there.
     */
    private static RuntimeException fillParts(long h, int bucket, byte[] rt, ByteBuffer[] outs, ByteBuffer scratch,
                                              int t, int threads, int parts, boolean release, int[] nodeStates) {
        try {
            for (int p = t * parts / threads; p < (t + 1) * parts / threads; p++) {
                nGraphFill(h, bucket, rt, outs, scratch, p, parts, release, nodeStates);
            }
            return null;
        } catch (RuntimeException e) {
            return e;
        }
    }

    /**
     * The complete files of graph (bucket, runtime) in new direct buffers (native order, the form
     * LiteRT's {@code Interpreter(ByteBuffer)} takes), in the order of {@link #graphImages}, written on
     * {@link #fillThreads} threads.
     */
    public ByteBuffer[] fillGraph(int bucket, String runtime) {
        List<GraphImage> images = graphImages(bucket, runtime);
        ByteBuffer[] outs = new ByteBuffer[images.size()];
        for (int i = 0; i < outs.length; i++) {
            outs[i] = direct(images.get(i).size).order(ByteOrder.nativeOrder());
        }
        long scratchBytes = graphScratchBytes(bucket, runtime);
        ByteBuffer[] scratch = new ByteBuffer[fillThreads()];
        for (int p = 0; p < scratch.length; p++) {
            scratch[p] = direct(scratchBytes);
        }
        fillGraph(bucket, runtime, outs, scratch);
        return outs;
    }

    /**
     * The name of graph (bucket, runtime)'s entry in a {@link WidthCache}; InnException(FORMAT) for a graph that
     * names a file other than by a plain file name (such a graph is not kept).
     */
    public String cacheEntry(int bucket, String runtime) {
        return new String(nCacheEntry(live(), bucket, runtime.getBytes(StandardCharsets.US_ASCII)),
                          StandardCharsets.US_ASCII);
    }

    /** The stamp of graph (bucket, runtime)'s filled files (direct buffers, in {@link #graphImages} order). */
    public byte[] cacheStamp(int bucket, String runtime, ByteBuffer[] images) {
        return nCacheStamp(live(), bucket, runtime.getBytes(StandardCharsets.US_ASCII), images, null);
    }

    /**
     * Throws InnException unless {@code stamp} is graph (bucket, runtime)'s and {@code images} (the kept files,
     * mapped) are byte for byte what it stamped: STALE for a stamp of another bundle, width, runtime or core,
     * CHECKSUM for damaged files.
     */
    public void checkCache(int bucket, String runtime, byte[] stamp, ByteBuffer[] images) {
        nCacheStamp(live(), bucket, runtime.getBytes(StandardCharsets.US_ASCII), images,
                    Objects.requireNonNull(stamp, "stamp"));
    }

    /**
     * Threads {@link #fillGraph(int, String)} uses: the processors available, at most 4 (past that the
     * largest layer, which one thread writes alone, bounds the gain on real networks); the Python
     * loader's {@code native.fill_threads} rule.
     */
    public static int fillThreads() {
        return Math.max(1, Math.min(4, Runtime.getRuntime().availableProcessors()));
    }

    @Override
    public void close() {
        long h = handle;
        handle = 0;
        nClose(h);
    }

    static ByteBuffer direct(long bytes) {
        if (bytes < 0 || bytes > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("buffer of " + bytes + " bytes");
        }
        return ByteBuffer.allocateDirect((int) bytes).order(ByteOrder.LITTLE_ENDIAN);
    }

    // ------------------------------------------------------------------ native (inn_jni.c)
    /** With {@code release} (a read-only file mapping only), each verified stretch of the file leaves memory. */
    private static native long nOpenDirect(ByteBuffer data, boolean release);

    private static native long nOpenArray(byte[] data, int offset, int length);

    private static native void nClose(long handle);

    private static native boolean nInPlace(long handle);

    private static native void nReleasePages(long handle);

    private static native int[] nCounts(long handle);

    private static native byte[] nLayerInfo(long handle, int bucket, int layer, long[] out);

    private static native byte[] nSection(long handle, byte[] tag);

    private static native long nScratchSize(long handle, int bucket);

    private static native void nMaterialize(long handle, int bucket, int layer, int layout, int dtype,
                                            ByteBuffer weight, ByteBuffer scales, ByteBuffer bias,
                                            ByteBuffer scratch);

    private static native byte[] nBucketInfo(long handle, int bucket, double[] ratioOut);

    private static native int nCostCount(long handle);

    private static native byte[] nCostRow(long handle, int index, long[] out);

    private static native boolean nCostFind(long handle, int bucket, byte[] runtime, long[] out);

    private static native long nBucketMacs(long handle, int bucket);

    private static native int nCascadeCount(long handle);

    private static native byte[] nCascade(long handle, int index, long[] out, int[] buckets, float[] thresholds);

    private static native int nGraphCount(long handle);

    private static native byte[] nGraphList(long handle, int index, int[] bucketOut);

    private static native int nGraphImageCount(long handle, int bucket, byte[] runtime);

    private static native byte[] nGraphImage(long handle, int bucket, byte[] runtime, int index, long[] sizeOut);

    private static native long nGraphScratchSize(long handle, int bucket, byte[] runtime);

    /**
     * part -1: the stored bytes of every image (scratch unused); else part {@code part} of {@code parts}, which
     * with {@code nodeStates} (one per part) first checks its share of the nodes and leaves its state there.
     */
    private static native void nGraphFill(long handle, int bucket, byte[] runtime, ByteBuffer[] outs,
                                          ByteBuffer scratch, int part, int parts, boolean release, int[] nodeStates);

    private static native byte[] nCacheEntry(long handle, int bucket, byte[] runtime);

    /** With {@code stamp} null: the stamp of {@code images}; else checks {@code images} against it (returns null). */
    private static native byte[] nCacheStamp(long handle, int bucket, byte[] runtime, ByteBuffer[] images,
                                             byte[] stamp);

    /** Whether the open left the nodes to the first fill (a mapped file) and none has verified them yet. */
    private static native boolean nNodesPending(long handle);

    /** Joins every part's node checksum state; throws when they do not give the stored checksum. */
    private static native void nNodesVerified(long handle, int bucket, int[] nodeStates);
}
