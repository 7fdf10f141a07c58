package dev.innmobile.demo

import android.app.Activity
import android.graphics.drawable.BitmapDrawable
import android.os.Bundle
import android.widget.ImageView
import android.widget.TextView
import dev.innmobile.InnException
import dev.innmobile.WidthPolicy
import java.util.Locale
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * One screen: the width the device chose at startup, what it cost, and a prediction on the bundled
 * sample. Startup runs off the main thread; failures (a corrupt bundle: InnException with the core's
 * message; no width fits the budget: NoWidthFits naming the smallest bucket's need) are shown, not thrown.
 */
class MainActivity : Activity() {
    private val worker: ExecutorService = Executors.newSingleThreadExecutor()

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        val status = findViewById<TextView>(R.id.status)
        status.setText(R.string.starting)
        worker.execute {
            val result = runCatching { Startup(applicationContext).run() }
            runOnUiThread {
                if (isDestroyed) return@runOnUiThread
                result.fold(onSuccess = { show(it) }, onFailure = { status.text = describe(it) })
            }
        }
    }

    override fun onDestroy() {
        worker.shutdown()
        super.onDestroy()
    }

    private fun show(r: StartupReport) {
        val image = findViewById<ImageView>(R.id.sample)
        image.setImageDrawable(BitmapDrawable(resources, r.sample).apply { isFilterBitmap = false }) // crisp 8x8
        val mib = 1024.0 * 1024.0
        findViewById<TextView>(R.id.status).text = String.format(
            Locale.ROOT,
            "Width: %s (bucket %d of %d, %s)\n" +
                "Budget: %.1f MiB = availMem %.0f MiB / %d%s\n" +
                "Why: %s\n\n" +
                "Startup: %.1f ms\n  open + choose %.1f ms\n  materialise (C core, JNI) %.1f ms, width cache: %s\n" +
                "  LiteRT interpreter %.1f ms\n" +
                "Inference: %.2f ms\n\n" +
                "Prediction: %d (%.0f%%), label %d",
            r.choice.candidate.name, r.choice.candidate.bucket + 1, r.bucketCount, r.runtime,
            r.budgetBytes / mib, r.availMemBytes / mib,
            if (r.lowRamDevice) WidthPolicy.LOW_RAM_AVAIL_MEM_DIVISOR else WidthPolicy.AVAIL_MEM_DIVISOR,
            if (r.lowRamDevice) " (low-RAM device)" else "",
            r.choice.reason,
            r.openMs + r.fillMs + r.interpreterMs, r.openMs, r.fillMs, r.widthCache, r.interpreterMs, r.inferenceMs,
            r.predicted, 100f * r.confidence, r.label,
        )
    }

    private fun describe(e: Throwable): String = when (e) {
        is InnException -> getString(R.string.bad_bundle, e.statusName(), e.message)
        is WidthPolicy.NoWidthFits -> getString(R.string.no_width, e.message)
        else -> getString(R.string.failed, e.toString())
    }
}
