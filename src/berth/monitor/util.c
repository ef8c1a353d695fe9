/* Growable byte buffers and small helpers of berth-monitor. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "monitor.h"

void *xalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);
	if (!p) {
		/* nothing sensible is left to do: the exit record cannot be
		 * written without memory either */
		say("out of memory");
		_exit(70);
	}
	return p;
}

static void reserve(struct buf *b, size_t more)
{
	if (b->off + b->len + more <= b->cap)
		return;
	if (b->off && b->len + more <= b->cap) {
		memmove(b->p, b->p + b->off, b->len);
		b->off = 0;
		return;
	}
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + more)
		cap *= 2;
	char *p = xalloc(cap);
	if (b->len)
		memcpy(p, b->p + b->off, b->len);
	free(b->p);
	b->p = p;
	b->off = 0;
	b->cap = cap;
}

void buf_add(struct buf *b, const void *data, size_t n)
{
	if (!n)
		return;
	reserve(b, n);
	memcpy(b->p + b->off + b->len, data, n);
	b->len += n;
}

void buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

void buf_addf(struct buf *b, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof small) {
		buf_add(b, small, n);
		return;
	}
	reserve(b, n + 1);
	va_start(ap, fmt);
	vsnprintf(b->p + b->off + b->len, n + 1, fmt, ap);
	va_end(ap);
	b->len += n;
}

void buf_eat(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->off = b->len = 0;
		return;
	}
	b->off += n;
	b->len -= n;
}

void buf_clear(struct buf *b)
{
	b->off = b->len = 0;
}

void buf_free(struct buf *b)
{
	free(b->p);
	b->p = NULL;
	b->off = b->len = b->cap = 0;
}

void say(const char *fmt, ...)
{
	char line[1024];
	int n = snprintf(line, sizeof line, "berth-monitor[%d]: ", (int)getpid());
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		return;
	n += m;
	if ((size_t)n > sizeof line - 2)
		n = sizeof line - 2;
	line[n++] = '\n';
	int saved = errno;
	if (write(2, line, n) < 0) {
		/* shim.log is gone: nowhere else to say it */
	}
	errno = saved;
}

int write_all(int fd, const void *data, size_t n)
{
	const char *p = data;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= w;
	}
	return 0;
}

int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
