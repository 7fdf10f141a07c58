package dev.innmobile.demo

import android.app.ActivityManager
import android.content.Context
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.os.SystemClock
import dev.innmobile.InnBundle
import dev.innmobile.WidthCache
import dev.innmobile.WidthPolicy
import org.json.JSONObject
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import java.io.File
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/** What the screen shows: the device's budget, the width it chose, how long startup took, a prediction. */
data class StartupReport(
    val availMemBytes: Long,
    val lowRamDevice: Boolean,
    val budgetBytes: Long,
    val choice: WidthPolicy.Choice,
    val bucketCount: Int,
    val runtime: String,
    val openMs: Double,
    val fillMs: Double,
    val widthCache: String,
    val interpreterMs: Double,
    val inferenceMs: Double,
    val predicted: Int,
    val confidence: Float,
    val label: Int,
    val sample: Bitmap,
)

/**
 * App start, step by step: read the device's memory, open the bundle (memory-mapped from the APK),
 * pick a width with [WidthPolicy] (the same rule as the Python side), let the native core write that
 * width's weights into the LiteRT model (JNI), and classify the bundled sample image.
 *
 * The sample's metadata (assets/sample.json, written by make_assets.py) names the runtime graph to
 * use and the input normalisation, so the app and the Python export cannot disagree silently.
 */
class Startup(private val context: Context) {

    fun run(): StartupReport {
        val sample = JSONObject(context.assets.open(SAMPLE_JSON).bufferedReader().use { it.readText() })
        val runtime = sample.getString("runtime")

        // 1. The budget: a share of the memory available right now (smaller on low-RAM devices).
        val am = checkNotNull(context.getSystemService(ActivityManager::class.java))
        val mem = ActivityManager.MemoryInfo().also { am.getMemoryInfo(it) }
        val budget = WidthPolicy.androidMemoryBudget(mem.availMem, am.isLowRamDevice)

        val t0 = SystemClock.elapsedRealtimeNanos()
        InnBundle.open(mapAsset(BUNDLE)).use { bundle ->
            // 2. The width: pack-time costs from the bundle's binary tables, or this device's profile when bundled.
            val candidates = WidthPolicy.candidates(bundle, runtime, readProfile())
            val choice = WidthPolicy.choose(candidates, budget, Double.NaN)
            val bucket = choice.candidate.bucket
            val t1 = SystemClock.elapsedRealtimeNanos()

            // 3. The weights: on this width's first start the core rebuilds the .tflite with its weights in
            // place, LiteRT starts from it and the width cache writes it meanwhile (CACHE_WRITER); every later
            // start maps the kept file, each byte checked against the core's stamp (a damaged or outdated one
            // is filled again).
            val images = bundle.graphImages(bucket, runtime)
            val cache = WidthCache(File(context.noBackupFilesDir, "inn-widths"))
            val loaded = cache.open(bundle, bucket, runtime, CACHE_WRITER)
            val model = loaded.buffers[images.indexOfFirst { it.name.endsWith(".tflite") }]
            bundle.releasePages() // LiteRT copies the weights next: peak memory need not hold the nodes too
            val t2 = SystemClock.elapsedRealtimeNanos()

            // 4. The runtime: LiteRT reads the model from the buffer as it is (a mapped file or the filled one).
            Interpreter(model, Interpreter.Options().setNumThreads(2)).use { interpreter ->
                val t3 = SystemClock.elapsedRealtimeNanos()
                val bitmap = context.assets.open(SAMPLE_PNG).use { BitmapFactory.decodeStream(it) }
                val input = inputTensor(interpreter, bitmap, sample)
                val out = interpreter.getOutputTensor(0)
                val output = ByteBuffer.allocateDirect(out.numBytes()).order(ByteOrder.nativeOrder())
                interpreter.run(input, output)
                val t4 = SystemClock.elapsedRealtimeNanos()
                val scores = scores(output, out.dataType(), out.quantizationParams())
                val best = scores.indices.maxByOrNull { scores[it] } ?: 0
                return StartupReport(
                    availMemBytes = mem.availMem,
                    lowRamDevice = am.isLowRamDevice,
                    budgetBytes = budget,
                    choice = choice,
                    bucketCount = bundle.bucketCount,
                    runtime = runtime,
                    openMs = ms(t0, t1),
                    fillMs = ms(t1, t2),
                    widthCache = loaded.cache,
                    interpreterMs = ms(t2, t3),
                    inferenceMs = ms(t3, t4),
                    predicted = best,
                    confidence = softmax(scores)[best],
                    label = sample.getInt("label"),
                    sample = bitmap,
                )
            }
        }
    }

    /** The optional device profile (`inn-mobile profile` JSON), parsed here: the facade reads no JSON. */
    private fun readProfile(): WidthPolicy.Profile? {
        val doc = JSONObject(readAssetOrNull(PROFILE_JSON) ?: return null)
        val profile = WidthPolicy.Profile(doc.getString("runtime"))
        val buckets = doc.getJSONObject("buckets")
        for (name in buckets.keys()) {
            val row = buckets.getJSONObject(name)
            profile.put(name, row.getDouble("latency_ms"), row.getLong("peak_bytes"))
        }
        return profile
    }

    private fun readAssetOrNull(name: String): String? =
        if (context.assets.list("")?.contains(name) == true) {
            context.assets.open(name).bufferedReader().use { it.readText() }
        } else {
            null
        }

    /** An asset memory-mapped from the APK (it is stored uncompressed: see noCompress in build.gradle.kts). */
    private fun mapAsset(name: String): ByteBuffer =
        context.assets.openFd(name).use { fd ->
            // The mapping outlives the descriptor; the stream does not own the fd (fd.use closes it once).
            FileInputStream(fd.fileDescriptor).channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
        }

    /** The grayscale sample as the model's input: pixel / 255, then (x - mean) / std, as in training. */
    private fun inputTensor(interpreter: Interpreter, bitmap: Bitmap, sample: JSONObject): ByteBuffer {
        val tensor = interpreter.getInputTensor(0)
        val mean = sample.getDouble("mean").toFloat()
        val std = sample.getDouble("std").toFloat()
        val pixels = IntArray(bitmap.width * bitmap.height)
        bitmap.getPixels(pixels, 0, bitmap.width, 0, 0, bitmap.width, bitmap.height)
        require(pixels.size == tensor.numElements()) {
            "sample has ${pixels.size} pixels, the model wants ${tensor.shape().contentToString()}"
        }
        val buf = ByteBuffer.allocateDirect(tensor.numBytes()).order(ByteOrder.nativeOrder())
        val q = tensor.quantizationParams()
        for (p in pixels) {
            val x = ((p and 0xFF) / 255f - mean) / std // gray: any channel
            when (tensor.dataType()) {
                DataType.FLOAT32 -> buf.putFloat(x)
                DataType.INT8 -> buf.put(Math.round(x / q.scale + q.zeroPoint).coerceIn(-128, 127).toByte())
                else -> error("unsupported input type ${tensor.dataType()}")
            }
        }
        buf.rewind()
        return buf
    }

    private fun scores(out: ByteBuffer, type: DataType, q: org.tensorflow.lite.Tensor.QuantizationParams): FloatArray {
        out.rewind()
        return when (type) {
            DataType.FLOAT32 -> FloatArray(out.remaining() / 4) { out.getFloat() }
            DataType.INT8 -> FloatArray(out.remaining()) { (out.get() - q.zeroPoint) * q.scale }
            else -> error("unsupported output type $type")
        }
    }

    private fun softmax(x: FloatArray): FloatArray {
        val m = x.maxOrNull() ?: 0f
        val e = x.map { Math.exp((it - m).toDouble()).toFloat() }
        val s = e.sum()
        return FloatArray(x.size) { e[it] / s }
    }

    private fun ms(from: Long, to: Long) = (to - from) / 1e6

    companion object {
        const val BUNDLE = "model.innb"
        const val SAMPLE_JSON = "sample.json"
        const val SAMPLE_PNG = "sample.png"
        /** Optional: a device profile (`inn-mobile profile`) measured on the target phone. */
        const val PROFILE_JSON = "profile.json"
        /** Writes a width's first-start files into the width cache off the start's path (one at a time). */
        val CACHE_WRITER: ExecutorService = Executors.newSingleThreadExecutor()
    }
}
