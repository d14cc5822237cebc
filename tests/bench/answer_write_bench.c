/*
 * answer_write_bench.c - what one answer's system call costs the intake: write() against send()
 * of a 700-byte answer (about a 202's size) on a loopback TCP connection whose other end a
 * second thread drains, as a client would. The two calls alternate in blocks of 100,000; the
 * figure is the CPU time of the writing thread per call (so it holds on a loaded machine), and
 * includes the receiving socket's TCP input, which the kernel runs in the sender's call on
 * loopback. The process has two threads, as the intake has several, so the descriptor lookups
 * take the reference a shared descriptor table needs.
 *
 *   cmake --build build --target bench_answer_write_bench && build/bench/bench_answer_write_bench
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ANSWER 700
#define BLOCK 100000
#define ROUNDS 10

static void *drain(void *arg)
{
    int fd = *(int *)arg;
    char b[65536];
    while (read(fd, b, sizeof b) > 0)
        ;
    return NULL;
}

static double thread_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* One call of each kind; a full socket (the reader is a thread away) waits for room. */
static int put(int fd, const char *b, int use_send)
{
    ssize_t n = use_send ? send(fd, b, ANSWER, MSG_NOSIGNAL) : write(fd, b, ANSWER);
    return n == ANSWER ? 0 : -1;
}

int main(void)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    socklen_t alen = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &alen) != 0) {
        fprintf(stderr, "listen: %s\n", strerror(errno));
        return 1;
    }
    int w = socket(AF_INET, SOCK_STREAM, 0);
    if (w < 0 || connect(w, (struct sockaddr *)&a, sizeof a) != 0) {
        fprintf(stderr, "connect: %s\n", strerror(errno));
        return 1;
    }
    int r = accept(l, NULL, NULL);
    int one = 1;
    setsockopt(w, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pthread_t th;
    pthread_create(&th, NULL, drain, &r);
    char b[ANSWER];
    memset(b, 'x', sizeof b);
    double ns[2] = {0, 0};
    for (int round = 0; round < ROUNDS; round++) {
        for (int use_send = 0; use_send < 2; use_send++) {
            double t = thread_ns();
            for (int i = 0; i < BLOCK; i++) {
                if (put(w, b, use_send) != 0) {
                    fprintf(stderr, "%s: %s\n", use_send ? "send" : "write", strerror(errno));
                    return 1;
                }
            }
            ns[use_send] += thread_ns() - t;
        }
    }
    printf("per %d-byte answer (CPU of the writing thread): write() %.0f ns, send() %.0f ns\n",
           ANSWER, ns[0] / (ROUNDS * (double)BLOCK), ns[1] / (ROUNDS * (double)BLOCK));
    shutdown(w, SHUT_WR);
    pthread_join(th, NULL);
    close(w);
    close(r);
    close(l);
    return 0;
}
