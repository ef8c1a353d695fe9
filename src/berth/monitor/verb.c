/* The runtime's start and delete, for berth-monitor. The monitor has no
 * runtime of its own: with berth-runtime it asks the shim zygote to run the
 * verb in a fork of the warm interpreter (the zygote's runtime request, see
 * berth/shim/zygote.py), which costs a fork instead of a new interpreter;
 * without a zygote (berthd gone, or another runtime such as runc) it execs
 * the runtime binary. Either way the verb gets /dev/null as stdin and
 * stdout and a pipe as stderr, whose last line is the error message. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "monitor.h"

#define ERR_KEEP (64 * 1024)
#define NO_ZYGOTE (-1001)
#define TIMED_OUT (-1000)   /* err says so already */
#define NO_ANSWER (-1002)   /* the zygote's fork ended without an exit line */
#define CONNECT_TIMEOUT_S 10

static void keep_tail(struct buf *err, const char *data, size_t n)
{
	buf_add(err, data, n);
	if (err->len > ERR_KEEP)
		buf_eat(err, err->len - ERR_KEEP);
}

static void drain(int fd, struct buf *err)
{
	char chunk[4096];
	for (;;) {
		ssize_t r = read(fd, chunk, sizeof chunk);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return;
		keep_tail(err, chunk, r);
	}
}

/* err becomes the last non-blank line of what the verb wrote, or a
 * sentence naming its status when it wrote nothing */
static void last_line(struct buf *err, const char *verb, int code)
{
	const char *p = buf_data(err);
	size_t end = err->len;
	for (;;) {
		while (end && (p[end - 1] == '\n' || p[end - 1] == ' ' || p[end - 1] == '\t'
			       || p[end - 1] == '\r'))
			end--;
		if (!end)
			break;
		size_t start = end;
		while (start && p[start - 1] != '\n')
			start--;
		size_t s = start;
		while (s < end && (p[s] == ' ' || p[s] == '\t' || p[s] == '\r'))
			s++;
		if (s < end) {
			struct buf line = {0};
			buf_add(&line, p + s, end - s);
			buf_free(err);
			*err = line;
			return;
		}
		end = start;
	}
	buf_clear(err);
	buf_addf(err, "runtime %s exited with status %d", verb, code);
}

static int status_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return -WTERMSIG(status);
	return 255;
}

static int connect_zygote(const char *path, int timeout_s)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof a.sun_path)
		return -1;
	strcpy(a.sun_path, path);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -1;
	struct timeval tv = {.tv_sec = timeout_s};
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
		close(s);
		return -1;
	}
	return s;
}

static int send_request(int s, const struct verb_opts *o, const char *const *args, int fds[3])
{
	struct buf req = {0};
	buf_adds(&req, "{\"runtime\":[\"--root\",");
	json_str(&req, o->root, strlen(o->root), true);
	for (int i = 0; args[i]; i++) {
		buf_add(&req, ",", 1);
		json_str(&req, args[i], strlen(args[i]), true);
	}
	buf_adds(&req, "]}\n");
	char ctl[CMSG_SPACE(3 * sizeof(int))] = {0};
	struct iovec iov = {buf_data(&req), req.len};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
			   .msg_controllen = sizeof ctl};
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(3 * sizeof(int));
	memcpy(CMSG_DATA(c), fds, 3 * sizeof(int));
	ssize_t w = sendmsg(s, &m, MSG_NOSIGNAL);
	int ok = w == (ssize_t)req.len ? 0 : -1;
	buf_free(&req);
	return ok;
}

/* A request to the zygote, sent: 0, or NO_ZYGOTE when none took it. */
static int zygote_send(const struct verb_opts *o, const char *const *args, struct zcall *z)
{
	*z = (struct zcall){.sock = -1, .err = -1};
	int s = connect_zygote(o->zygote, CONNECT_TIMEOUT_S);
	if (s < 0)
		return NO_ZYGOTE;
	int pipefd[2], null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0 || pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) < 0) {
		if (null >= 0)
			close(null);
		close(s);
		return NO_ZYGOTE;
	}
	int fds[3] = {null, null, pipefd[1]};
	int sent = send_request(s, o, args, fds);
	close(null);
	close(pipefd[1]);
	if (sent < 0) {
		close(s);
		close(pipefd[0]);
		return NO_ZYGOTE;
	}
	z->sock = s;
	z->err = pipefd[0];
	return 0;
}

/* The zygote's answer lines: {"pid":N} at once, {"exit":N} at the end.
 * Returns the exit code; NO_ZYGOTE when it never took the request,
 * NO_ANSWER when its fork (or the zygote) died before saying how it went. */
static int zygote_wait(struct zcall *z, int timeout_s, struct buf *err)
{
	int code = NO_ZYGOTE;
	bool done = false, eof = false;
	int64_t deadline = now_ms() + (int64_t)timeout_s * 1000;
	while (!done) {
		int64_t left = deadline - now_ms();
		if (left <= 0) {
			if (z->pid > 0)
				kill(z->pid, SIGKILL);
			buf_clear(err);
			buf_addf(err, "runtime (pid %ld) did not finish in %ds", z->pid, timeout_s);
			code = TIMED_OUT;
			break;
		}
		struct pollfd pf[2] = {{z->sock, POLLIN, 0}, {eof ? -1 : z->err, POLLIN, 0}};
		int n = poll(pf, 2, left > 1000000 ? 1000000 : (int)left);
		if (n < 0 && errno != EINTR)
			break;
		if (n <= 0)
			continue;
		if (pf[1].revents) {
			char chunk[4096];
			ssize_t r = read(z->err, chunk, sizeof chunk);
			if (r > 0)
				keep_tail(err, chunk, r);
			else if (r == 0 || errno != EAGAIN)
				eof = true;
		}
		if (!pf[0].revents)
			continue;
		char chunk[512];
		ssize_t r = recv(z->sock, chunk, sizeof chunk, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (z->pid > 0)
				code = NO_ANSWER;
			break;
		}
		buf_add(&z->in, chunk, r);
		char *nl;
		while (!done && (nl = memchr(buf_data(&z->in), '\n', z->in.len))) {
			struct jobj obj;
			size_t len = nl - buf_data(&z->in);
			int bad = json_object(buf_data(&z->in), len, &obj);
			buf_eat(&z->in, len + 1);
			const struct jval *v;
			if (bad) {
				continue;
			} else if ((v = json_get(&obj, "pid")) && v->type == J_INT) {
				z->pid = v->num;
			} else if ((v = json_get(&obj, "exit")) && v->type == J_INT) {
				code = (int)v->num;
				done = true;
			} else if ((v = json_get(&obj, "error")) && v->type == J_STR) {
				say("zygote: %s", v->str);
				done = true;
			}
		}
	}
	if (!eof)
		drain(z->err, err);
	return code;
}

void verb_disarm(struct zcall *z)
{
	if (z->sock >= 0)
		close(z->sock);
	if (z->err >= 0)
		close(z->err);
	buf_free(&z->in);
	*z = (struct zcall){.sock = -1, .err = -1};
}

static void child(const char *runtime, const char *const *argv, int null, int errfd)
{
	static const int reset[] = {SIGHUP, SIGINT, SIGPIPE, SIGTERM, SIGCHLD};
	sigset_t none;
	dup2(null, 0);
	dup2(null, 1);
	dup2(errfd, 2);
	syscall(SYS_close_range, 3, ~0U, 0);
	for (size_t i = 0; i < sizeof reset / sizeof reset[0]; i++)
		signal(reset[i], SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execvp(runtime, (char *const *)argv);
	dprintf(2, "cannot run runtime %s: %s\n", runtime, strerror(errno));
	_exit(127);
}

static int via_exec(const struct verb_opts *o, const char *const *args, int timeout_s,
		    struct buf *err)
{
	int nargs = 0;
	while (args[nargs])
		nargs++;
	const char **argv = xalloc((nargs + 4) * sizeof *argv);
	argv[0] = o->runtime;
	argv[1] = "--root";
	argv[2] = o->root;
	for (int i = 0; i < nargs; i++)
		argv[3 + i] = args[i];
	int pipefd[2], null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0 || pipe2(pipefd, O_CLOEXEC) < 0) {
		buf_addf(err, "cannot run runtime %s: %s", o->runtime, strerror(errno));
		free(argv);
		return TIMED_OUT;
	}
	pid_t pid = fork();
	if (pid == 0)
		child(o->runtime, argv, null, pipefd[1]);
	int saved = errno;
	free(argv);
	close(null);
	close(pipefd[1]);
	if (pid < 0) {
		close(pipefd[0]);
		buf_addf(err, "cannot run runtime %s: %s", o->runtime, strerror(saved));
		return TIMED_OUT;
	}
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	int64_t deadline = now_ms() + (int64_t)timeout_s * 1000;
	bool eof = false;
	int status = 0;
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			if (pidfd >= 0)
				close(pidfd);
			close(pipefd[0]);
			buf_clear(err);
			buf_addf(err, "runtime (pid %d) did not finish in %ds", (int)pid, timeout_s);
			return TIMED_OUT;
		}
		struct pollfd pf[2] = {{pidfd, POLLIN, 0}, {eof ? -1 : pipefd[0], POLLIN, 0}};
		int n = poll(pf, 2, pidfd < 0 ? 50 : (left > 1000000 ? 1000000 : (int)left));
		if (n < 0 && errno != EINTR)
			break;
		if (pf[1].revents) {
			char chunk[4096];
			ssize_t r = read(pipefd[0], chunk, sizeof chunk);
			if (r > 0)
				keep_tail(err, chunk, r);
			else if (r == 0 || errno != EINTR)
				eof = true;
		}
		if (pidfd >= 0 ? pf[0].revents != 0 : waitpid(pid, &status, WNOHANG) == pid) {
			if (pidfd >= 0)
				waitpid(pid, &status, 0);
			break;
		}
	}
	if (pidfd >= 0)
		close(pidfd);
	fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
	if (!eof)
		drain(pipefd[0], err);
	close(pipefd[0]);
	return status_code(status);
}

static int result(int code, const char *verb, struct buf *err)
{
	if (code == 0)
		return 0;
	if (code != TIMED_OUT)
		last_line(err, verb, code);
	return -1;
}

int run_verb(const struct verb_opts *o, const char *const *args, int timeout_s, struct buf *err)
{
	buf_clear(err);
	int code = NO_ZYGOTE;
	struct zcall z;
	if (verb_send(o, args, &z) == 0) {
		code = zygote_wait(&z, timeout_s, err);
		verb_disarm(&z);
	}
	if (code == NO_ZYGOTE) {
		buf_clear(err);
		code = via_exec(o, args, timeout_s, err);
	}
	/* a fork that died without a word: as RuntimeProc does */
	return result(code == NO_ANSWER ? 255 : code, args[0], err);
}

int verb_send(const struct verb_opts *o, const char *const *args, struct zcall *z)
{
	*z = (struct zcall){.sock = -1, .err = -1};
	return o->zygote && zygote_send(o, args, z) == 0 ? 0 : -1;
}

int verb_finish(const struct verb_opts *o, struct zcall *z, const char *const *args,
		int timeout_s, struct buf *err)
{
	buf_clear(err);
	int code = z->sock >= 0 ? zygote_wait(z, timeout_s, err) : NO_ZYGOTE;
	verb_disarm(z);
	/* without an answer (the zygote killed meanwhile) the verb runs again,
	 * exec'd: only for verbs that may, as delete -f */
	if (code == NO_ZYGOTE || code == NO_ANSWER) {
		struct verb_opts alone = *o;
		alone.zygote = NULL;
		return run_verb(&alone, args, timeout_s, err);
	}
	return result(code, args[0], err);
}
