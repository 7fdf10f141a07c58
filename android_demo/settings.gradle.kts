// Android Studio project of the inn-mobile demo app. Open this folder (android_demo/) in Android
// Studio; the native core is pulled from ../inn_mobile/csrc by app/src/main/cpp/CMakeLists.txt.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "inn-mobile-demo"
include(":app")
