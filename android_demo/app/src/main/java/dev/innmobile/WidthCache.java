package dev.innmobile;

import java.io.File;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.util.List;
import java.util.Objects;
import java.util.UUID;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;

/**
 * Filled widths kept in a directory (the app's {@code getCacheDir()} or {@code getNoBackupFilesDir()}), so that
 * every start after a width's first loads plain runtime files: no fill, no fresh memory for the weights.
 *
 * <p>The entries are the Python loader's ({@code inn_mobile/runtime/width_cache.py}): a directory named by the
 * core ({@code inn_cache_entry}) holding the graph's files and the stamp the core wrote after them, which
 * names the bundle, width, runtime and fill version and each file's size and CRC-32C. {@link #open} checks
 * every byte of the kept files against it before handing them out, so a damaged or outdated entry is never
 * loaded: it is deleted and the width filled again. An entry appears whole or not at all (written in a
 * temporary directory, renamed into place), and a cache that cannot be written only costs the time.
 *
 * <p>LiteRT takes the returned {@link MappedByteBuffer} as it is ({@code new Interpreter(buffer)}, no copy);
 * ExecuTorch's {@code Module.load} takes the files' paths ({@link Loaded#paths}), so its first start writes the
 * files before it returns ({@link #open(InnBundle, int, String)}). LiteRT can start from the filled buffers
 * while an executor writes them ({@link #open(InnBundle, int, String, ExecutorService)}): writing a width's
 * files into the page cache can cost more than its fill, and the first start need not wait for it.
 */
public final class WidthCache {
    private final File directory;

    /** A cache in {@code directory} (created when first written). */
    public WidthCache(File directory) {
        this.directory = Objects.requireNonNull(directory, "directory");
    }

    /** What {@link #open} hands out: the graph's files, in the order of {@link InnBundle#graphImages}. */
    public static final class Loaded {
        /** The files' bytes: the kept files mapped read-only, or new direct buffers the core filled. */
        public final ByteBuffer[] buffers;
        /** The kept files' paths (null when the width is not kept, or not yet). */
        public final File[] paths;
        /** "hit", "stored", "storing" (written by the executor: {@link #kept}), or "not stored: why". */
        public final String cache;
        /** When "storing": the write's outcome, "stored" or "not stored: why"; else null. */
        public final Future<String> kept;

        Loaded(ByteBuffer[] buffers, File[] paths, String cache, Future<String> kept) {
            this.buffers = buffers;
            this.paths = paths;
            this.cache = cache;
            this.kept = kept;
        }
    }

    /** The kept files of graph (bucket, runtime) when they check against their stamp, else fills and keeps them
     * (written before it returns, so that {@link Loaded#paths} can be loaded). */
    public Loaded open(InnBundle bundle, int bucket, String runtime) {
        Loaded kept = load(bundle, bucket, runtime);
        if (kept != null) {
            return kept;
        }
        ByteBuffer[] filled = bundle.fillGraph(bucket, runtime);
        try {
            return new Loaded(filled, store(bundle, bucket, runtime, filled), "stored", null);
        } catch (IOException | InnException e) {
            return new Loaded(filled, null, "not stored: " + e.getMessage(), null);
        }
    }

    /**
     * As {@link #open(InnBundle, int, String)}, but a width filled now is handed out at once and its files are
     * written by {@code background} ({@link Loaded#kept}). The stamp is computed before this returns, so the
     * bundle may be closed meanwhile; the filled buffers must stay unchanged until the write ends (a runtime
     * only reads them).
     */
    public Loaded open(InnBundle bundle, int bucket, String runtime, ExecutorService background) {
        Loaded kept = load(bundle, bucket, runtime);
        if (kept != null) {
            return kept;
        }
        ByteBuffer[] filled = bundle.fillGraph(bucket, runtime);
        Pending pending;
        try {
            pending = pending(bundle, bucket, runtime, filled);
        } catch (InnException e) {
            return new Loaded(filled, null, "not stored: " + e.getMessage(), null);
        }
        Future<String> write = background.submit(() -> {
            try {
                pending.put(); // false: another start's entry is in place, checked when next loaded
                return "stored";
            } catch (IOException e) {
                return "not stored: " + e.getMessage();
            }
        });
        return new Loaded(filled, null, "storing", write);
    }

    /** The kept files of graph (bucket, runtime), every byte checked; null (a bad entry deleted) when none is whole. */
    public Loaded load(InnBundle bundle, int bucket, String runtime) {
        File entry;
        try {
            entry = entry(bundle, bucket, runtime);
        } catch (InnException e) {
            return null; // a graph that is never kept
        }
        List<InnBundle.GraphImage> images = bundle.graphImages(bucket, runtime);
        File[] paths = new File[images.size()];
        ByteBuffer[] maps = new ByteBuffer[images.size()];
        try {
            byte[] stamp = Files.readAllBytes(new File(entry, STAMP).toPath());
            for (int i = 0; i < paths.length; i++) {
                paths[i] = new File(entry, images.get(i).name);
                maps[i] = map(paths[i]);
            }
            bundle.checkCache(bucket, runtime, stamp, maps);
        } catch (IOException | InnException e) { // missing, unreadable, damaged, or another bundle's or width's
            delete(entry);
            return null;
        }
        return new Loaded(maps, paths, "hit", null);
    }

    /** Keeps the filled {@code images} of graph (bucket, runtime) with their stamp; returns the kept files. */
    public File[] store(InnBundle bundle, int bucket, String runtime, ByteBuffer[] images) throws IOException {
        Pending pending = pending(bundle, bucket, runtime, images);
        for (int attempt = 0; attempt < 2; attempt++) { // free (load deleted a bad entry), unless another won
            if (pending.put()) {
                return pending.paths();
            }
            Loaded theirs = load(bundle, bucket, runtime); // checked like any entry (and deleted if bad)
            if (theirs != null) {
                return theirs.paths;
            }
        }
        throw new IOException("cannot put a new entry in place of " + pending.entry);
    }

    /** What keeping a filled graph needs from its bundle: the entry, the file names and the stamp. */
    private Pending pending(InnBundle bundle, int bucket, String runtime, ByteBuffer[] images) {
        File entry = entry(bundle, bucket, runtime); // throws InnException(FORMAT) for a graph never kept
        byte[] stamp = bundle.cacheStamp(bucket, runtime, images);
        List<InnBundle.GraphImage> names = bundle.graphImages(bucket, runtime);
        String[] files = new String[names.size()];
        for (int i = 0; i < files.length; i++) {
            files[i] = names.get(i).name;
        }
        return new Pending(entry, files, images, stamp);
    }

    /** A filled graph's files and stamp, to be written as one entry (no bundle needed any more). */
    private static final class Pending {
        final File entry;
        final String[] names;
        final ByteBuffer[] images;
        final byte[] stamp;

        Pending(File entry, String[] names, ByteBuffer[] images, byte[] stamp) {
            this.entry = entry;
            this.names = names;
            this.images = images;
            this.stamp = stamp;
        }

        File[] paths() {
            File[] paths = new File[names.length];
            for (int i = 0; i < names.length; i++) {
                paths[i] = new File(entry, names[i]);
            }
            return paths;
        }

        /** Writes the entry in a temporary directory and renames it into place: true when it is there now,
         * false when another entry holds the place. Nothing is left half-written. */
        boolean put() throws IOException {
            File directory = entry.getParentFile();
            if (!directory.isDirectory() && !directory.mkdirs() && !directory.isDirectory()) {
                throw new IOException("cannot make the width cache directory " + directory);
            }
            File tmp = new File(directory, ".tmp-" + UUID.randomUUID());
            if (!tmp.mkdir()) {
                throw new IOException("cannot write in the width cache directory " + directory);
            }
            try {
                for (int i = 0; i < names.length; i++) {
                    write(new File(tmp, names[i]), images[i]);
                }
                write(new File(tmp, STAMP), ByteBuffer.wrap(stamp)); // last: it vouches for the files
                return tmp.renameTo(entry);
            } finally {
                delete(tmp);
            }
        }
    }

    /** The stamp's file name in an entry (INN_CACHE_STAMP_FILE). */
    public static final String STAMP = "stamp.innc";

    private File entry(InnBundle bundle, int bucket, String runtime) {
        return new File(directory, bundle.cacheEntry(bucket, runtime));
    }

    private static MappedByteBuffer map(File file) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(file, "r"); FileChannel ch = f.getChannel()) {
            return ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size()); // the mapping outlives the channel
        }
    }

    private static void write(File file, ByteBuffer data) throws IOException {
        ByteBuffer src = data.duplicate();
        src.clear();
        try (RandomAccessFile f = new RandomAccessFile(file, "rw"); FileChannel ch = f.getChannel()) {
            while (src.hasRemaining()) {
                ch.write(src);
            }
        }
    }

    private static void delete(File file) {
        File[] children = file.listFiles();
        if (children != null) {
            for (File c : children) {
                delete(c);
            }
        }
        if (!file.delete() && file.exists()) {
            return; // left for a later store to replace; a stale entry is never loaded (its stamp)
        }
    }
}
