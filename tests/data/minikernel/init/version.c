/* As the kernel's init/version-timestamp.c: the banner of this very build. */
const char linux_banner[] = "Linux version " RELEASE " (" BUILDER ") (gcc) " UTS_VERSION "\n";
