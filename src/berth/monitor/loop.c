/* berth-monitor's event loop: one thread, one epoll, as berth/shim/loop.py.
 *
 * Sources: the container's stdout/stderr pipes (or the pty master), a
 * signalfd for SIGCHLD, the attach and control listeners and their
 * connections. When the init exits (other children are reaped and ignored)
 * the runtime's delete starts (in a fork of the zygote), the output is
 * drained for at most DRAIN_MS, exit.json is written atomically, waiters
 * are answered, the sockets are removed, attach clients get the rest of
 * the output and are closed, and once the delete is done shim.pid goes. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "monitor.h"

#define DRAIN_MS 2000
#define READ_SIZE 65536
#define DELETE_TIMEOUT 30
#define ERRS (EPOLLERR | EPOLLHUP)

static void nonblock(int fd)
{
	if (fd >= 0)
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static int reg(struct mon *m, struct src *s, uint32_t events, int op)
{
	struct epoll_event ev = {.events = events, .data.ptr = s};
	return epoll_ctl(m->ep, op, s->fd, &ev);
}

/* ---------------------------------------------------------------- exits */

long long oom_kills(const char *const *files, int n)
{
	long long total = 0;
	for (int i = 0; i < n; i++) {
		FILE *f = fopen(files[i], "re");
		if (!f)
			continue;
		char line[256];
		while (fgets(line, sizeof line, f)) {
			long long v;
			if (sscanf(line, "oom_kill %lld", &v) == 1)
				total += v;
		}
		fclose(f);
	}
	return total;
}

void exit_json(struct mon *m, struct buf *b)
{
	buf_addf(b, "{\"exit_code\":%d,\"finished_at\":\"%s\",\"oom_killed\":%s}", m->exit_code,
		 m->finished_at, m->oom_killed ? "true" : "false");
}

static void reap(struct mon *m)
{
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid <= 0)
			return;
		if (pid != m->o->init_pid || m->exited)
			continue;
		m->exited = true;
		m->exit_code = WIFEXITED(status) ? WEXITSTATUS(status)
			       : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 255;
		m->oom_killed = oom_kills(m->o->oom_files, m->o->n_oom) > m->o->oom_before;
		rfc3339nano(m->finished_at);
		/* the runtime's delete runs in a fork of the zygote while the
		 * output drains, exit.json is written and waiters are answered:
		 * the init's pid namespace is gone with it, nothing writes any
		 * more, and the OOM counter is read already */
		const char *args[] = {"delete", "-f", m->o->id, NULL};
		m->del_sent = true;
		verb_send(&m->verb, args, &m->del);
	}
}

static void write_exit(struct mon *m)
{
	char path[4096], tmp[4100];
	snprintf(path, sizeof path, "%s/exit.json", m->o->state_dir);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	struct buf b = {0};
	exit_json(m, &b);
	buf_add(&b, "\n", 1);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write_all(fd, buf_data(&b), b.len) < 0 || fsync(fd) < 0) {
		say("exit: %s: %s", tmp, strerror(errno));
	}
	if (fd >= 0)
		close(fd);
	if (fd >= 0 && rename(tmp, path) < 0)
		say("exit: rename %s: %s", tmp, strerror(errno));
	buf_free(&b);
	/* no fsync of the directory: the rename is ordered after the data on
	 * ext4, and a second journal commit here would delay every wait */
}

/* ---------------------------------------------------------------- stdin */

static int stdin_fd(struct mon *m)
{
	if (!m->o->open_stdin || m->stdin_closed)
		return -1;
	return m->master >= 0 ? m->master : m->stdin_src.fd;
}

static void arm_stdin(struct mon *m)
{
	uint32_t want = m->stdin_buf.len ? EPOLLOUT : 0;
	int fd = stdin_fd(m);
	if (fd < 0 || want == m->stdin_mask)
		return;
	if (fd == m->master) {
		if (m->out[S_STDOUT].fd >= 0)
			reg(m, &m->out[S_STDOUT], EPOLLIN | want, EPOLL_CTL_MOD);
	} else if (!m->stdin_mask) {
		reg(m, &m->stdin_src, want, EPOLL_CTL_ADD);
	} else if (!want) {
		epoll_ctl(m->ep, EPOLL_CTL_DEL, fd, NULL);
	}
	m->stdin_mask = want;
}

void close_stdin(struct mon *m)
{
	m->stdin_closing = true;
	if (m->stdin_closed)
		return;
	buf_clear(&m->stdin_buf);
	arm_stdin(m);
	m->stdin_closed = true;
	if (m->master >= 0) {
		if (write(m->master, "\x04", 1) < 0) {
			/* ^D is the reader's EOF; a gone reader needs none */
		}
		return;
	}
	if (m->stdin_src.fd >= 0) {
		close(m->stdin_src.fd);
		m->stdin_src.fd = -1;
	}
}

static void flush_stdin(struct mon *m)
{
	int fd = stdin_fd(m);
	if (fd < 0) {
		buf_clear(&m->stdin_buf);
		return;
	}
	while (m->stdin_buf.len) {
		ssize_t w = write(fd, buf_data(&m->stdin_buf), m->stdin_buf.len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				buf_clear(&m->stdin_buf);   /* EPIPE/EIO: nobody reads stdin any more */
			break;
		}
		buf_eat(&m->stdin_buf, w);
	}
	if (!m->stdin_buf.len && m->stdin_closing)
		close_stdin(m);
	else
		arm_stdin(m);
	conns_rearm(m);
}

void to_stdin(struct mon *m, const char *data, size_t n)
{
	if (stdin_fd(m) < 0 || m->stdin_closing)
		return;
	buf_add(&m->stdin_buf, data, n);
	flush_stdin(m);
}

/* ---------------------------------------------------------------- output */

static void drop_source(struct mon *m, struct src *s)
{
	if (s->fd < 0)
		return;
	if (s->fd == m->master) {
		m->stdin_mask = 0;
		buf_clear(&m->stdin_buf);
	}
	epoll_ctl(m->ep, EPOLL_CTL_DEL, s->fd, NULL);
	s->fd = -1;   /* the fd itself stays open: the master is stdin too */
}

static void on_output(struct mon *m, struct src *s)
{
	static char frame[8 + READ_SIZE];
	char *data = frame + 8;
	ssize_t r = read(s->fd, data, READ_SIZE);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0) {   /* EIO: the pty has no slave left */
		drop_source(m, s);
		return;
	}
	jsonlog_write(&m->log, s->arg, data, r);
	const char *msg = data;
	size_t len = r;
	if (m->master < 0) {
		/* Docker's multiplexed stream: stream byte, three zeros, length */
		frame[0] = s->arg == S_STDOUT ? 1 : 2;
		frame[1] = frame[2] = frame[3] = 0;
		frame[4] = (r >> 24) & 0xFF;
		frame[5] = (r >> 16) & 0xFF;
		frame[6] = (r >> 8) & 0xFF;
		frame[7] = r & 0xFF;
		msg = frame;
		len += 8;
	}
	for (struct conn *c = m->conns; c; c = c->next)
		if (c->kind == K_ATTACH && c->header && c->want[s->arg] && !c->closed)
			conn_send(m, c, msg, len);
}

/* ---------------------------------------------------------------- set-up */

static int setup(struct mon *m)
{
	const struct options *o = m->o;
	m->ep = epoll_create1(EPOLL_CLOEXEC);
	if (m->ep < 0)
		return -1;
	m->master = o->fd_master;
	m->out[S_STDOUT] = (struct src){T_OUTPUT, o->tty ? o->fd_master : o->fd_stdout, S_STDOUT};
	m->out[S_STDERR] = (struct src){T_OUTPUT, o->tty ? -1 : o->fd_stderr, S_STDERR};
	for (int i = 0; i < 2; i++) {
		if (m->out[i].fd < 0)
			continue;
		nonblock(m->out[i].fd);
		if (reg(m, &m->out[i], EPOLLIN, EPOLL_CTL_ADD) < 0)
			return -1;
	}
	m->stdin_src = (struct src){T_STDIN, o->tty ? -1 : o->fd_stdin, 0};
	nonblock(m->stdin_src.fd);

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);
	m->sig = (struct src){T_SIGNAL, signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC), 0};
	if (m->sig.fd < 0 || reg(m, &m->sig, EPOLLIN, EPOLL_CTL_ADD) < 0)
		return -1;
	int lfd[2] = {o->fd_attach, o->fd_control};
	for (int i = 0; i < 2; i++) {
		m->listen[i] = (struct src){T_LISTEN, lfd[i], i == 0 ? K_ATTACH : K_CONTROL};
		nonblock(lfd[i]);
		if (reg(m, &m->listen[i], EPOLLIN, EPOLL_CTL_ADD) < 0)
			return -1;
	}
	if (jsonlog_open(&m->log, o->log_path, o->log_max_size, o->log_max_files) < 0)
		say("log %s: %s", o->log_path, strerror(errno));   /* output is then only live */
	m->started = o->started;
	if (o->fd_state >= 0)
		handoff_restore(m, o->fd_state);
	return 0;
}

static void dispatch(struct mon *m, struct src *s, uint32_t ev)
{
	switch (s->type) {
	case T_OUTPUT:
		if (ev & EPOLLOUT)
			flush_stdin(m);
		if ((ev & (EPOLLIN | ERRS)) && s->fd >= 0)
			on_output(m, s);
		break;
	case T_STDIN:
		flush_stdin(m);
		break;
	case T_SIGNAL: {
		struct signalfd_siginfo si;
		while (read(s->fd, &si, sizeof si) == sizeof si)
			;
		reap(m);
		break;
	}
	case T_LISTEN:
		conn_accept(m, s);
		break;
	case T_CONN:
		conn_event(m, (struct conn *)s, ev);
		break;
	}
}

/* ---------------------------------------------------------------- the end */

static void unlink_in_state(struct mon *m, const char *name)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", m->o->state_dir, name);
	if (unlink(path) < 0 && errno != ENOENT)
		say("unlink %s: %s", path, strerror(errno));
}

static int finish(struct mon *m)
{
	for (int i = 0; i < 2; i++)
		drop_source(m, &m->out[i]);
	jsonlog_close(&m->log);
	write_exit(m);
	/* before `delete`: the exit is on disk, and whoever waits should not
	 * wait for the runtime's clean-up too */
	conns_answer_waiters(m);
	/* the sockets go first: a client that sees its attach stream end and
	 * then asks for the exit finds no socket and reads exit.json; attach
	 * streams end before the delete, which takes a fork of the zygote */
	static const char *const socks[] = {"attach.sock", "control.sock", "console.sock"};
	for (size_t i = 0; i < sizeof socks / sizeof socks[0]; i++)
		unlink_in_state(m, socks[i]);
	conns_last_round(m);
	for (int i = 0; i < 2; i++)
		close(m->listen[i].fd);
	int io[] = {m->o->fd_stdout, m->o->fd_stderr, m->master, m->stdin_src.fd};
	for (size_t i = 0; i < sizeof io / sizeof io[0]; i++)
		if (io[i] >= 0)
			close(io[i]);
	const char *args[] = {"delete", "-f", m->o->id, NULL};
	struct buf err = {0};
	if (!m->del_sent)
		m->del = (struct zcall){.sock = -1, .err = -1};
	if (verb_finish(&m->verb, &m->del, args, DELETE_TIMEOUT, &err) < 0
	    && !strstr(buf_data(&err), "not exist") && !strstr(buf_data(&err), "not found"))
		say("delete: %.*s", (int)err.len, buf_data(&err));
	buf_free(&err);
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	/* last: berthd takes shim.pid's process for "still deleting" */
	unlink_in_state(m, "shim.pid");
	return 0;
}

int monitor_run(const struct options *o)
{
	static struct mon m;
	m.o = o;
	m.verb = (struct verb_opts){o->runtime, o->runtime_root, o->zygote};
	if (setup(&m) < 0) {
		say("set-up: %s", strerror(errno));
		return 1;
	}
	reap(&m);
	int64_t drain_until = 0;
	for (;;) {
		int timeout = -1;
		if (m.exited) {
			if (m.out[0].fd < 0 && m.out[1].fd < 0)
				break;
			if (!drain_until)
				drain_until = now_ms() + DRAIN_MS;
			int64_t left = drain_until - now_ms();
			if (left <= 0)
				break;
			timeout = (int)left;
		}
		struct epoll_event evs[64];
		int n = epoll_wait(m.ep, evs, 64, timeout);
		if (n < 0 && errno != EINTR) {
			/* cannot wait any more: the container is cleaned up as if
			 * its monitor had died, and says so */
			say("epoll: %s", strerror(errno));
			if (!m.exited) {
				m.exited = true;
				m.exit_code = 255;
				rfc3339nano(m.finished_at);
			}
			break;
		}
		for (int i = 0; i < n; i++)
			dispatch(&m, evs[i].data.ptr, evs[i].events);
		conn_free_closed(&m);
	}
	return finish(&m);
}
