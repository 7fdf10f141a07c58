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
 * ExecuTorch's {@code Module.load} takes the files' paths ({@link Loaded#paths}).
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
        /** The kept files' paths (null when the width could not be kept). */
        public final File[] paths;
        /** "hit", "stored", or "not stored: why". */
        public final String cache;

        Loaded(ByteBuffer[] buffers, File[] paths, String cache) {
            this.buffers = buffers;
            this.paths = paths;
            this.cache = cache;
        }
    }

    /** The kept files of graph (bucket, runtime) when they check against their stamp, else fills and keeps them. */
    public Loaded open(InnBundle bundle, int bucket, String runtime) {
        Loaded kept = load(bundle, bucket, runtime);
        if (kept != null) {
            return kept;
        }
        ByteBuffer[] filled = bundle.fillGraph(bucket, runtime);
        try {
            return new Loaded(filled, store(bundle, bucket, runtime, filled), "stored");
        } catch (IOException | InnException e) {
            return new Loaded(filled, null, "not stored: " + e.getMessage());
        }
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
        return new Loaded(maps, paths, "hit");
    }

    /** Keeps the filled {@code images} of graph (bucket, runtime) with their stamp; returns the kept files. */
    public File[] store(InnBundle bundle, int bucket, String runtime, ByteBuffer[] images) throws IOException {
        File entry = entry(bundle, bucket, runtime); // throws InnException(FORMAT) for a graph never kept
        byte[] stamp = bundle.cacheStamp(bucket, runtime, images);
        List<InnBundle.GraphImage> names = bundle.graphImages(bucket, runtime);
        if (!directory.isDirectory() && !directory.mkdirs() && !directory.isDirectory()) {
            throw new IOException("cannot make the width cache directory " + directory);
        }
        File tmp = new File(directory, ".tmp-" + UUID.randomUUID());
        if (!tmp.mkdir()) {
            throw new IOException("cannot write in the width cache directory " + directory);
        }
        try {
            File[] paths = new File[images.length];
            for (int i = 0; i < images.length; i++) {
                paths[i] = new File(entry, names.get(i).name);
                write(new File(tmp, names.get(i).name), images[i]);
            }
            write(new File(tmp, STAMP), ByteBuffer.wrap(stamp));
            for (int attempt = 0; attempt < 2; attempt++) { // free (load deleted a bad entry), unless another won
                if (tmp.renameTo(entry)) {
                    return paths;
                }
                Loaded theirs = load(bundle, bucket, runtime); // checked like any entry (and deleted if bad)
                if (theirs != null) {
                    return theirs.paths;
                }
            }
            throw new IOException("cannot rename " + tmp + " to " + entry);
        } finally {
            delete(tmp);
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
