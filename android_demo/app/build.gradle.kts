import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
}

android {
    namespace = "dev.innmobile.demo"
    compileSdk = libs.versions.compileSdk.get().toInt()
    ndkVersion = libs.versions.ndk.get()

    defaultConfig {
        applicationId = "dev.innmobile.demo"
        minSdk = libs.versions.minSdk.get().toInt()
        targetSdk = libs.versions.targetSdk.get().toInt()
        versionCode = 1
        versionName = "0.1.0"
        ndk {
            abiFilters += listOf("arm64-v8a", "x86_64") // phones + the emulator
        }
        externalNativeBuild {
            cmake {
                // 16 KB memory pages (Android 15+); C only, so no C++ runtime to package.
                arguments += listOf("-DANDROID_SUPPORT_FLEXIBLE_PAGE_SIZES=ON", "-DANDROID_STL=none")
            }
        }
    }

    buildTypes {
        release {
            isMinifyEnabled = true // R8: proguard-rules.pro keeps what JNI binds by name
            proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"), "proguard-rules.pro")
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    externalNativeBuild {
        cmake {
            path = file("src/main/cpp/CMakeLists.txt")
            version = libs.versions.cmake.get()
        }
    }

    androidResources {
        // Stored uncompressed so the app memory-maps them straight from the APK (no copy of the nodes).
        noCompress += listOf("innb", "tflite")
    }
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

dependencies {
    implementation(libs.litert)
}

// The bundle and the sample are generated from the Python package (not committed): fail early with
// the command to run instead of building an app that cannot start.
val checkDemoAssets by tasks.registering {
    val assets = listOf("model.innb", "sample.json", "sample.png").map { file("src/main/assets/$it") }
    doLast {
        val missing = assets.filter { !it.exists() }
        if (missing.isNotEmpty()) {
            throw GradleException(
                "missing ${missing.joinToString { it.name }}: run `.venv/bin/python android_demo/make_assets.py` " +
                    "in the repository root first (see android_demo/README.md)",
            )
        }
    }
}
tasks.named("preBuild") { dependsOn(checkDemoAssets) }
