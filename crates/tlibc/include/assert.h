/* assert.h (tlibc): a failed assert prints file, line and function and ends the program as
 * abort() does. Deliberately without an include guard, as C requires (NDEBUG may change). */
#undef assert
#ifdef NDEBUG
#define assert(e) ((void)0)
#else
void __assert_fail(const char *expr, const char *file, unsigned int line, const char *func) __attribute__((noreturn));
#define assert(e) ((e) ? (void)0 : __assert_fail(#e, __FILE__, __LINE__, __func__))
#endif
