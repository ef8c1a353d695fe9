/* Attach and control clients of berth-monitor, as berth/shim/loop.py serves
 * them (that file documents both protocols).
 *
 * A connection stays registered with epoll from accept to close; a mask of
 * 0 still reports the peer's hang-up, so abandoned half-closed clients go.
 * Closed connections are freed only after the epoll batch they were closed
 * in, so a stale event can never reach a new client on a reused fd. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "monitor.h"

#define READ_SIZE 65536
#define CLIENT_BUF_MAX (8 << 20)   /* a client this far behind is dropped */
#define STDIN_BUF_MAX (1 << 20)    /* clients' stdin reads pause above this */
#define HEADER_MAX 4096
#define START_TIMEOUT 120
#define ERRS (EPOLLERR | EPOLLHUP)

void conn_accept(struct mon *m, struct src *l)
{
	for (;;) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				say("accept: %s", strerror(errno));
			if (errno == ECONNABORTED)
				continue;
			return;
		}
		struct conn *c = xalloc(sizeof *c);
		c->src = (struct src){T_CONN, fd, 0};
		c->kind = l->arg;
		c->reading = true;
		c->mask = EPOLLIN;
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
		if (epoll_ctl(m->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			say("epoll: %s", strerror(errno));
			close(fd);
			free(c);
			continue;
		}
		/* at the tail: waiters are answered in the order they asked */
		struct conn **p = &m->conns;
		while (*p)
			p = &(*p)->next;
		*p = c;
	}
}

static void on_control_data(struct mon *m, struct conn *c, const char *data, size_t n);

/* A connection the Python shim's loop had (handoff.c): flags as it wrote
 * them; in and out are taken over */
void conn_restore(struct mon *m, int fd, enum conn_kind kind, const char *flags, int waits,
		  struct buf *in, struct buf *out)
{
	struct conn *c = xalloc(sizeof *c);
	c->src = (struct src){T_CONN, fd, 0};
	c->kind = kind;
	c->header = strchr(flags, 'h');
	c->stdin = strchr(flags, 'i');
	c->want[S_STDOUT] = strchr(flags, 'o');
	c->want[S_STDERR] = strchr(flags, 'e');
	c->reading = strchr(flags, 'r');
	c->waits = waits > 0 ? waits : 0;
	c->in = *in;
	c->out = *out;
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	struct epoll_event ev = {.events = 0, .data.ptr = c};
	if (epoll_ctl(m->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		say("hand-over: fd %d: %s", fd, strerror(errno));
		close(fd);
		buf_free(&c->in);
		buf_free(&c->out);
		free(c);
		return;
	}
	struct conn **p = &m->conns;
	while (*p)
		p = &(*p)->next;
	*p = c;
	conn_rearm(m, c);
	if (kind == K_CONTROL && c->in.len)
		on_control_data(m, c, "", 0);   /* a whole line read already */
}

void conn_rearm(struct mon *m, struct conn *c)
{
	if (c->closed)
		return;
	uint32_t mask = 0;
	if (c->reading) {
		bool paused = c->kind == K_ATTACH && c->header && c->stdin
			      && m->stdin_buf.len > STDIN_BUF_MAX;
		if (!paused)
			mask |= EPOLLIN;
	}
	if (c->out.len)
		mask |= EPOLLOUT;
	if (mask != c->mask) {
		struct epoll_event ev = {.events = mask, .data.ptr = c};
		epoll_ctl(m->ep, EPOLL_CTL_MOD, c->src.fd, &ev);
		c->mask = mask;
	}
}

void conns_rearm(struct mon *m)
{
	for (struct conn *c = m->conns; c; c = c->next)
		conn_rearm(m, c);
}

void conn_close(struct mon *m, struct conn *c)
{
	if (c->closed)
		return;
	c->closed = true;
	c->waits = 0;
	epoll_ctl(m->ep, EPOLL_CTL_DEL, c->src.fd, NULL);
	close(c->src.fd);
	c->src.fd = -1;
}

void conn_free_closed(struct mon *m)
{
	struct conn **p = &m->conns;
	while (*p) {
		struct conn *c = *p;
		if (c->closed) {
			*p = c->next;
			buf_free(&c->in);
			buf_free(&c->out);
			free(c);
		} else {
			p = &c->next;
		}
	}
}

void conn_send(struct mon *m, struct conn *c, const void *data, size_t n)
{
	if (c->closed)
		return;
	if (!c->out.len) {
		ssize_t w = send(c->src.fd, data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w == (ssize_t)n)
			return;
		if (w < 0 && errno != EAGAIN && errno != EINTR) {
			conn_close(m, c);
			return;
		}
		if (w > 0) {
			data = (const char *)data + w;
			n -= w;
		}
	}
	buf_add(&c->out, data, n);
	if (c->out.len > CLIENT_BUF_MAX) {
		say("%s client too slow, dropped", c->kind == K_ATTACH ? "attach" : "control");
		conn_close(m, c);
		return;
	}
	conn_rearm(m, c);
}

static void reply(struct mon *m, struct conn *c, struct buf *b)
{
	buf_add(b, "\n", 1);
	conn_send(m, c, buf_data(b), b->len);
	buf_free(b);
}

static void reply_text(struct mon *m, struct conn *c, const char *json)
{
	struct buf b = {0};
	buf_adds(&b, json);
	reply(m, c, &b);
}

static void reply_error(struct mon *m, struct conn *c, const char *msg, size_t n)
{
	struct buf b = {0};
	buf_adds(&b, "{\"error\":");
	json_str(&b, msg, n, true);
	buf_adds(&b, "}");
	reply(m, c, &b);
}

static void reply_exit(struct mon *m, struct conn *c)
{
	struct buf b = {0};
	exit_json(m, &b);
	reply(m, c, &b);
}

/* Python's isinstance(v, int): true and false count */
static bool small_int(const struct jval *v, long long lo, long long hi, long long *out)
{
	if (!v)
		return false;
	if (v->type == J_TRUE || v->type == J_FALSE)
		*out = v->type == J_TRUE;
	else if (v->type == J_INT && !v->big)
		*out = v->num;
	else
		return false;
	return *out >= lo && *out <= hi;
}

static void op_resize(struct mon *m, struct conn *c, const struct jobj *req)
{
	long long h, w;
	if (!small_int(json_get(req, "height"), 0, 0xFFFF, &h)
	    || !small_int(json_get(req, "width"), 0, 0xFFFF, &w)) {
		const char *e = "resize: height and width must be integers 0..65535";
		reply_error(m, c, e, strlen(e));
		return;
	}
	if (m->master >= 0) {
		struct winsize ws = {.ws_row = h, .ws_col = w};
		if (ioctl(m->master, TIOCSWINSZ, &ws) < 0) {
			char e[128];
			snprintf(e, sizeof e, "resize: %s", strerror(errno));
			reply_error(m, c, e, strlen(e));
			return;
		}
	}
	reply_text(m, c, "{\"ok\":true}");   /* no terminal: nothing to resize (as Docker) */
}

static void op_start(struct mon *m, struct conn *c)
{
	const char *e = NULL;
	if (m->started || !m->o->no_start)
		e = "already started";
	else if (m->exited)
		e = "the container exited before start";
	if (e) {
		reply_error(m, c, e, strlen(e));
		return;
	}
	m->started = true;
	const char *args[] = {"start", m->o->id, NULL};
	struct buf err = {0};
	if (run_verb(&m->verb, args, START_TIMEOUT, &err) < 0)
		reply_error(m, c, buf_data(&err), err.len);
	else
		reply_text(m, c, "{\"ok\":true}");
	buf_free(&err);
}

static void op_kill(struct mon *m, struct conn *c, const struct jobj *req)
{
	long long sig;
	char e[128];
	if (!small_int(json_get(req, "signal"), 1, 64, &sig))
		snprintf(e, sizeof e, "kill: signal must be an integer 1..64");
	else if (m->exited)
		snprintf(e, sizeof e, "kill: the container has exited");
	else if (kill(m->o->init_pid, (int)sig) < 0)
		snprintf(e, sizeof e, "kill: %s", strerror(errno));
	else {
		reply_text(m, c, "{\"ok\":true}");
		return;
	}
	reply_error(m, c, e, strlen(e));
}

static void control(struct mon *m, struct conn *c, const char *line, size_t n)
{
	struct jobj req;
	if (json_object(line, n, &req) < 0) {
		reply_text(m, c, "{\"error\":\"request is not a json object\"}");
		return;
	}
	const struct jval *op = json_get(&req, "op");
	const char *name = op && op->type == J_STR ? op->str : NULL;
	if (name && !strcmp(name, "ping")) {
		struct buf b = {0};
		buf_addf(&b, "{\"ok\":true,\"pid\":%d}", (int)m->o->init_pid);
		reply(m, c, &b);
	} else if (name && !strcmp(name, "wait")) {
		if (m->exited && !c->waits && m->done)
			reply_exit(m, c);
		else
			c->waits++;
	} else if (name && !strcmp(name, "resize")) {
		op_resize(m, c, &req);
	} else if (name && !strcmp(name, "start")) {
		op_start(m, c);
	} else if (name && !strcmp(name, "kill")) {
		op_kill(m, c, &req);
	} else {
		struct buf e = {0};
		if (name)
			buf_addf(&e, "unknown op '%s'", name);
		else
			buf_adds(&e, "unknown op None");
		reply_error(m, c, buf_data(&e), e.len);
		buf_free(&e);
	}
}

/* The length of the first line in c->in, or -1 while there is none (a
 * client that sends HEADER_MAX bytes without one is closed) */
static long first_line(struct mon *m, struct conn *c)
{
	char *nl = memchr(buf_data(&c->in), '\n', c->in.len);
	if (nl)
		return nl - buf_data(&c->in);
	if (c->in.len > HEADER_MAX)
		conn_close(m, c);
	return -1;
}

static void on_control_data(struct mon *m, struct conn *c, const char *data, size_t n)
{
	buf_add(&c->in, data, n);
	long len;
	while ((len = first_line(m, c)) >= 0) {
		struct buf line = {0};
		buf_add(&line, buf_data(&c->in), len);
		buf_eat(&c->in, len + 1);
		bool blank = true;
		for (long i = 0; i < len && blank; i++) {
			char ch = buf_data(&line)[i];
			blank = ch == ' ' || (ch >= '\t' && ch <= '\r');
		}
		if (!blank)
			control(m, c, buf_data(&line), len);
		buf_free(&line);
		if (c->closed)
			return;
	}
}

static void on_attach_data(struct mon *m, struct conn *c, const char *data, size_t n)
{
	if (c->header) {
		if (c->stdin)
			to_stdin(m, data, n);
		return;
	}
	buf_add(&c->in, data, n);
	long len = first_line(m, c);
	if (len < 0)
		return;
	char *p = buf_data(&c->in);
	char *nl = p + len;
	struct jobj req;
	if (json_object(p, nl - p, &req) < 0) {
		conn_close(m, c);
		return;
	}
	c->header = true;
	c->stdin = json_truthy(&req, "stdin");
	c->want[S_STDOUT] = json_truthy(&req, "stdout");
	c->want[S_STDERR] = json_truthy(&req, "stderr");
	buf_eat(&c->in, nl - p + 1);
	if (json_truthy(&req, "ack"))
		conn_send(m, c, "", 1);   /* one NUL before any output: registered */
	if (c->in.len && c->stdin && !c->closed)
		to_stdin(m, buf_data(&c->in), c->in.len);
	buf_free(&c->in);
	conn_rearm(m, c);
}

static void on_eof(struct mon *m, struct conn *c)
{
	c->reading = false;
	if (c->kind == K_ATTACH && c->header && c->stdin && m->o->stdin_once) {
		m->stdin_closing = true;
		if (!m->stdin_buf.len)
			close_stdin(m);
	}
	if (c->kind == K_CONTROL && (c->waits || c->out.len)) {
		conn_rearm(m, c);   /* half-closed: still owed a reply */
		return;
	}
	if (c->kind == K_CONTROL || !c->header) {
		conn_close(m, c);
		return;
	}
	conn_rearm(m, c);
}

void conn_event(struct mon *m, struct conn *c, uint32_t ev)
{
	if (c->closed)
		return;
	if ((ev & EPOLLOUT) && c->out.len) {
		ssize_t w = send(c->src.fd, buf_data(&c->out), c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno != EAGAIN && errno != EINTR) {
			conn_close(m, c);
			return;
		}
		if (w > 0)
			buf_eat(&c->out, w);
		conn_rearm(m, c);
		if (!c->out.len && !c->reading && c->kind == K_CONTROL && !c->waits) {
			conn_close(m, c);
			return;
		}
	}
	if ((ev & ERRS) && !c->reading) {
		conn_close(m, c);   /* the peer is gone */
		return;
	}
	if ((ev & (EPOLLIN | ERRS)) && c->reading) {
		static char data[READ_SIZE];
		ssize_t r = recv(c->src.fd, data, sizeof data, MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (r <= 0)
			on_eof(m, c);
		else if (c->kind == K_ATTACH)
			on_attach_data(m, c, data, r);
		else
			on_control_data(m, c, data, r);
	}
}

void conns_answer_waiters(struct mon *m)
{
	m->done = true;
	for (struct conn *c = m->conns; c; c = c->next) {
		while (c->waits > 0 && !c->closed) {
			c->waits--;
			reply_exit(m, c);
		}
	}
}

/* Answers what is already queued, then writes every client's pending
 * output (bounded time) and closes all connections. */
void conns_last_round(struct mon *m)
{
	for (int i = 0; i < 2; i++)
		conn_accept(m, &m->listen[i]);
	struct epoll_event evs[64];
	int n = epoll_wait(m->ep, evs, 64, 50);
	for (int i = 0; i < n; i++) {
		struct src *s = evs[i].data.ptr;
		if (s->type == T_CONN)
			conn_event(m, (struct conn *)s, evs[i].events);
	}
	int64_t deadline = now_ms() + 2000;
	for (struct conn *c = m->conns; c; c = c->next) {
		if (c->closed)
			continue;
		int fd = c->src.fd;
		if (c->out.len) {
			int64_t left = deadline - now_ms();
			if (left < 50)
				left = 50;
			struct timeval tv = {.tv_sec = left / 1000, .tv_usec = (left % 1000) * 1000};
			setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		}
		while (c->out.len) {
			ssize_t w = send(fd, buf_data(&c->out), c->out.len, MSG_NOSIGNAL);
			if (w <= 0)
				break;
			buf_eat(&c->out, w);
			if (now_ms() > deadline)
				break;
		}
		shutdown(fd, SHUT_RDWR);
		conn_close(m, c);
	}
	conn_free_closed(m);
}
