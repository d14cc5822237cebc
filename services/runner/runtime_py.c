/*
 * runtime_py.c - the in-sandbox runtime, the channel module it talks to the parent with, and
 * the run-time guard of workflow code.
 *
 * _calseta_chan (C): send(bytes) writes one frame (4-byte big-endian length, then the bytes)
 * to the inherited channel descriptor; recv() reads one. Nothing else: no descriptor, path or
 * socket is reachable from it.
 * _calseta_guard (C): an audit hook (PySys_AddAuditHook: it cannot be removed from Python)
 * armed by exec_module() right before the workflow's module body runs, for the rest of the
 * child's life. Armed, it refuses the audit events that give frames or code objects
 * (object.__getattr__ of tb_frame, f_code, __code__ and the gi_, cr_, ag_ frames and code;
 * sys._getframe, sys.settrace), new code (compile, exec, code.__new__, function.__new__,
 * marshal), restricted attribute writes, imports of modules not yet loaded, files,
 * processes, sockets and every other event,
 * except builtins.id and the asyncio hooks. Only the stdlib's namedtuple/NamedTuple/ForwardRef
 * frames may compile/exec, and only format_exc() may read tb_frame/f_code (to format a
 * traceback).
 * runner_runtime_py (Python): calseta.workflows and app.workflows.context (WorkflowContext,
 * WorkflowResult, ...), ctx.http (the httpx.AsyncClient subset, brokered by the parent),
 * ctx.log, ctx.secrets (only the names handed over for this run), ctx.integrations (Okta/Entra
 * clients on top of ctx.http, built only from a system workflow's `integrations` request
 * object; None for every user workflow), the guarded __import__ that
 * serves read-only views of preloaded modules (without attrgetter/methodcaller/Formatter/...,
 * with attribute-list-free functools.wraps/update_wrapper and a memo-free copy.deepcopy), and
 * the driver that runs `async def run(ctx)` on an asyncio loop created before the sandbox
 * closes (seccomp forbids new sockets/epolls).
 */
#include "runner.h"

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>


static int chan_fd = -1;

void runtime_set_chan_fd(int fd)
{
    chan_fd = fd;
}

static PyObject *chan_send(PyObject *self, PyObject *arg)
{
    (void)self;
    char *data;
    Py_ssize_t len;
    if (PyBytes_AsStringAndSize(arg, &data, &len) != 0)
        return NULL;
    if (len > CHAN_MAX_FRAME) {
        PyErr_SetString(PyExc_ValueError, "message too large for the runner channel");
        return NULL;
    }
    uint32_t be = htonl((uint32_t)len);
    if (fd_write_full(chan_fd, &be, 4) != 0 || fd_write_full(chan_fd, data, (size_t)len) != 0) {
        PyErr_SetString(PyExc_OSError, "runner channel closed");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *chan_recv(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    uint32_t be;
    if (fd_read_full(chan_fd, &be, 4) != 0) {
        PyErr_SetString(PyExc_OSError, "runner channel closed");
        return NULL;
    }
    uint32_t len = ntohl(be);
    if (len > CHAN_MAX_FRAME) {
        PyErr_SetString(PyExc_OSError, "oversized frame on the runner channel");
        return NULL;
    }
    PyObject *b = PyBytes_FromStringAndSize(NULL, len);
    if (!b)
        return NULL;
    if (fd_read_full(chan_fd, PyBytes_AS_STRING(b), len) != 0) {
        Py_DECREF(b);
        PyErr_SetString(PyExc_OSError, "runner channel closed");
        return NULL;
    }
    return b;
}

static PyMethodDef chan_methods[] = {
    {"send", chan_send, METH_O, "Send one frame to the runner parent."},
    {"recv", chan_recv, METH_NOARGS, "Receive one frame from the runner parent."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef chan_module = {
    PyModuleDef_HEAD_INIT,
    "_calseta_chan",
    "Frames to and from the runner parent.",
    -1,
    chan_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

static PyObject *chan_init(void)
{
    return PyModule_Create(&chan_module);
}

/* ---- _calseta_guard: the run-time guard (an audit hook armed right before workflow code) ---- */

/* The guard's whole state: armed once per child, never disarmed (there is no Python-visible
 * way back); trusted is raised only by guard_format_exc around traceback.format_exc. */
struct guard {
    int armed;
    int trusted;
    PyObject *exec_codes; /* code objects whose frames may compile/exec/set attributes */
    PyObject *format_exc; /* traceback.format_exc, captured in the zygote */
};

static struct guard guard;

static const char *const guard_allowed_events[] = {
    "builtins.id",
    "sys.set_asyncgen_hook_firstiter",
    "sys.set_asyncgen_hook_finalizer",
    "cpython.PyInterpreterState_Clear",
    "cpython._PySys_ClearAuditHooks",
    NULL,
};

static const char *const guard_permission_prefixes[] = {
    "open",    "os.",   "shutil.", "socket.",   "subprocess.", "tempfile.", "pty.",
    "fcntl.",  "glob.", "mmap.",   "resource.", "signal.",     "syslog.",   "ctypes.",
    "urllib.", "http.", "ftplib.", "smtplib.",  "webbrowser.", "sqlite3.",  NULL,
};

static int event_in(const char *event, const char *const *list, int prefix)
{
    for (size_t i = 0; list[i]; i++) {
        size_t n = strlen(list[i]);
        if (prefix ? strncmp(event, list[i], n) == 0 : strcmp(event, list[i]) == 0)
            return 1;
    }
    return 0;
}

/* The executing Python frame runs one of the stdlib code objects allowed to compile/exec. */
static int guard_frame_trusted(void)
{
    PyFrameObject *f = PyEval_GetFrame();
    if (!f || !guard.exec_codes)
        return 0;
    PyCodeObject *co = PyFrame_GetCode(f);
    int ok = 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(guard.exec_codes); i++)
        if ((PyObject *)co == PyTuple_GET_ITEM(guard.exec_codes, i))
            ok = 1;
    Py_DECREF(co);
    return ok;
}

static const char *guard_attr_name(PyObject *args)
{
    if (!PyTuple_Check(args) || PyTuple_GET_SIZE(args) < 2)
        return "?";
    PyObject *name = PyTuple_GET_ITEM(args, 1);
    const char *s = PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
    if (!s)
        PyErr_Clear();
    return s ? s : "?";
}

static int guard_deny(PyObject *exc, const char *event, PyObject *args)
{
    if (strncmp(event, "object.", 7) == 0)
        PyErr_Format(exc, "attribute '%s' is blocked by the workflow sandbox",
                     guard_attr_name(args));
    else
        PyErr_Format(exc, "'%s' is blocked by the workflow sandbox", event);
    return -1;
}

static int guard_hook(const char *event, PyObject *args, void *data)
{
    (void)data;
    if (!guard.armed || event_in(event, guard_allowed_events, 0))
        return 0;
    if (strcmp(event, "object.__getattr__") == 0) {
        const char *a = guard_attr_name(args);
        if (guard.trusted && (strcmp(a, "tb_frame") == 0 || strcmp(a, "f_code") == 0))
            return 0;
        return guard_deny(PyExc_AttributeError, event, args);
    }
    if (strcmp(event, "object.__setattr__") == 0 || strcmp(event, "object.__delattr__") == 0)
        return guard_frame_trusted() ? 0 : guard_deny(PyExc_AttributeError, event, args);
    if (strcmp(event, "compile") == 0 || strcmp(event, "exec") == 0)
        return guard_frame_trusted() ? 0 : guard_deny(PyExc_RuntimeError, event, args);
    if (strcmp(event, "sys._getframe") == 0 || strcmp(event, "sys._current_frames") == 0)
        return guard_deny(PyExc_ValueError, event, args); /* what the stdlib's callers expect */
    if (strcmp(event, "import") == 0)
        return guard_deny(PyExc_ImportError, event, args);
    if (event_in(event, guard_permission_prefixes, 1))
        return guard_deny(PyExc_PermissionError, event, args);
    return guard_deny(PyExc_RuntimeError, event, args);
}

static PyObject *guard_configure(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *codes, *fmt;
    if (!PyArg_ParseTuple(args, "O!O:configure", &PyTuple_Type, &codes, &fmt))
        return NULL;
    if (guard.armed) {
        PyErr_SetString(PyExc_RuntimeError, "the workflow guard is armed");
        return NULL;
    }
    Py_INCREF(codes);
    Py_INCREF(fmt);
    Py_XSETREF(guard.exec_codes, codes);
    Py_XSETREF(guard.format_exc, fmt);
    Py_RETURN_NONE;
}

static PyObject *guard_exec_module(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *code, *globals;
    int arm;
    if (!PyArg_ParseTuple(args, "O!O!p:exec_module", &PyCode_Type, &code, &PyDict_Type, &globals,
                          &arm))
        return NULL;
    if (guard.armed) {
        PyErr_SetString(PyExc_RuntimeError, "the workflow guard is armed");
        return NULL;
    }
    if (arm) {
        if (PySys_AddAuditHook(guard_hook, NULL) != 0)
            return NULL;
        guard.armed = 1;
    }
    return PyEval_EvalCode(code, globals, globals);
}

static PyObject *guard_format_exc(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    if (!guard.format_exc) {
        PyErr_SetString(PyExc_RuntimeError, "the workflow guard is not configured");
        return NULL;
    }
    guard.trusted++;
    PyObject *r = PyObject_CallNoArgs(guard.format_exc);
    guard.trusted--;
    return r;
}

static PyObject *guard_is_coroutine_function(PyObject *self, PyObject *obj)
{
    (void)self;
    if (!PyFunction_Check(obj))
        Py_RETURN_FALSE;
    PyCodeObject *co = (PyCodeObject *)PyFunction_GET_CODE(obj);
    return PyBool_FromLong((co->co_flags & CO_COROUTINE) != 0);
}

static PyMethodDef guard_methods[] = {
    {"configure", guard_configure, METH_VARARGS,
     "configure(exec_codes, format_exc): set once in the zygote, refused once armed."},
    {"exec_module", guard_exec_module, METH_VARARGS,
     "exec_module(code, globals, arm): arm the audit hook (for good) and run a module body."},
    {"format_exc", guard_format_exc, METH_NOARGS,
     "traceback.format_exc(), allowed to read tb_frame/f_code while the guard is armed."},
    {"is_coroutine_function", guard_is_coroutine_function, METH_O,
     "True for a Python function defined with async def (reads no audited attribute)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef guard_module = {
    PyModuleDef_HEAD_INIT,
    "_calseta_guard",
    "The run-time guard of workflow code: an audit hook that cannot be removed.",
    -1,
    guard_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

static PyObject *guard_init(void)
{
    return PyModule_Create(&guard_module);
}

void runtime_register_chan(void)
{
    PyImport_AppendInittab("_calseta_chan", chan_init);
    PyImport_AppendInittab("_calseta_guard", guard_init);
}

const char runner_runtime_py[] =
    "# The in-sandbox side of a workflow run: calseta.workflows, the guarded import, ctx, and the\n"
    "# driver that runs `async def run(ctx)` and reports over the parent channel.\n"
    "import sys\n"
    "import builtins\n"
    "import types\n"
    "import json as _json\n"
    "import base64 as _b64\n"
    "import time as _time\n"
    "import asyncio\n"
    "import collections as _collections\n"
    "import copy as _copy\n"
    "import functools as _functools\n"
    "import linecache\n"
    "import traceback\n"
    "import typing as _typing\n"
    "import urllib.parse as _up\n"
    "import _calseta_chan as _chan\n"
    "import _calseta_guard as _guard\n"
    "import _calseta_validator as _val\n"
    "\n"
    "PRELOAD = (\n"
    "    \"asyncio\", \"base64\", \"collections\", \"collections.abc\", \"copy\", \"datetime\", "
    "\"enum\",\n"
    "    \"functools\", \"hashlib\", \"hmac\", \"html\", \"html.parser\", \"html.entities\", "
    "\"http\",\n"
    "    \"http.client\", \"inspect\", \"ipaddress\", \"itertools\", \"json\", \"logging\", "
    "\"math\", \"operator\",\n"
    "    \"re\", \"statistics\", \"string\", \"textwrap\", \"time\", \"typing\", "
    "\"typing_extensions\",\n"
    "    \"unicodedata\", \"urllib\", \"urllib.parse\", \"urllib.error\", \"uuid\", "
    "\"encodings.idna\",\n"
    "    \"encodings.ascii\", \"encodings.latin_1\", \"encodings.utf_8\", \"encodings.utf_16\",\n"
    "    \"encodings.base64_codec\", \"encodings.hex_codec\", \"os\", \"posix\", \"socket\", "
    "\"subprocess\",\n"
    "    \"traceback\", \"linecache\", \"_strptime\", \"encodings.cp1252\", "
    "\"encodings.utf_8_sig\",\n"
    "    \"encodings.utf_32\", \"encodings.unicode_escape\", \"encodings.raw_unicode_escape\",\n"
    "    \"encodings.punycode\")\n"
    "\n"
    "\n"
    "def preload():\n"
    "    import importlib\n"
    "    for name in PRELOAD:\n"
    "        try:\n"
    "            importlib.import_module(name)\n"
    "        except ImportError:\n"
    "            pass\n"
    "    import hashlib, hmac, uuid\n"
    "    for alg in (\"md5\", \"sha1\", \"sha256\", \"sha512\"):\n"
    "        hashlib.new(alg, b\"x\").hexdigest()\n"
    "    hmac.new(b\"k\", b\"m\", \"sha256\").hexdigest()\n"
    "    uuid.UUID(int=0)\n"
    "    _guard.configure(_exec_codes(), traceback.format_exc)\n"
    "\n"
    "\n"
    "def _exec_codes():\n"
    "    \"\"\"The only code objects that may compile or exec source, or set restricted "
    "attributes,\n"
    "    once the guard is armed: the stdlib's own namedtuple (its field names are checked\n"
    "    identifiers; it sets __defaults__/__module__ on what it made), typing's NamedTuple "
    "helper,\n"
    "    and typing.ForwardRef (compiles an annotation string, never runs it).\"\"\"\n"
    "    return (_collections.namedtuple.__code__, _typing.ForwardRef.__init__.__code__,\n"
    "            vars(_typing)[\"_make_nmtuple\"].__code__)\n"
    "\n"
    "\n"
    "def _send(obj):\n"
    "    _chan.send(_json.dumps(obj, default=str).encode())\n"
    "\n"
    "\n"
    "def _call(obj):\n"
    "    _send(obj)\n"
    "    return _json.loads(_chan.recv())\n"
    "\n"
    "\n"
    "class WorkflowResult:\n"
    "    def __init__(self, success, message, data=None):\n"
    "        self.success = bool(success)\n"
    "        self.message = str(message)\n"
    "        self.data = dict(data) if data else {}\n"
    "\n"
    "    @classmethod\n"
    "    def ok(cls, message=\"OK\", data=None):\n"
    "        return cls(True, message, data)\n"
    "\n"
    "    @classmethod\n"
    "    def fail(cls, message, data=None):\n"
    "        return cls(False, message, data)\n"
    "\n"
    "    def __repr__(self):\n"
    "        return \"WorkflowResult(success=%r, message=%r, data=%r)\" % (\n"
    "            self.success, self.message, self.data)\n"
    "\n"
    "\n"
    "class _Record:\n"
    "    FIELDS = ()\n"
    "\n"
    "    def __init__(self, values):\n"
    "        for f in self.FIELDS:\n"
    "            setattr(self, f, values.get(f))\n"
    "\n"
    "    def __repr__(self):\n"
    "        return \"%s(%s)\" % (type(self).__name__,\n"
    "                           \", \".join(\"%s=%r\" % (f, getattr(self, f)) for f in "
    "self.FIELDS))\n"
    "\n"
    "\n"
    "class IndicatorContext(_Record):\n"
    "    FIELDS = (\"uuid\", \"type\", \"value\", \"malice\", \"is_enriched\", "
    "\"enrichment_results\",\n"
    "              \"first_seen\", \"last_seen\", \"created_at\", \"updated_at\")\n"
    "\n"
    "\n"
    "class AlertContext(_Record):\n"
    "    FIELDS = (\"uuid\", \"title\", \"severity\", \"source_name\", \"status\", "
    "\"occurred_at\", \"tags\",\n"
    "              \"raw_payload\")\n"
    "\n"
    "\n"
    "class TriggerContext(_Record):\n"
    "    FIELDS = (\"indicator_type\", \"indicator_value\", \"trigger_source\", \"alert_id\")\n"
    "\n"
    "\n"
    "class HTTPError(Exception):\n"
    "    pass\n"
    "\n"
    "\n"
    "class RequestError(HTTPError):\n"
    "    pass\n"
    "\n"
    "\n"
    "class TimeoutException(RequestError):\n"
    "    pass\n"
    "\n"
    "\n"
    "class SSRFBlockedError(RequestError):\n"
    "    pass\n"
    "\n"
    "\n"
    "class HTTPStatusError(HTTPError):\n"
    "    def __init__(self, message, request=None, response=None):\n"
    "        super().__init__(message)\n"
    "        self.request = request\n"
    "        self.response = response\n"
    "\n"
    "\n"
    "class Headers(dict):\n"
    "    def __init__(self, pairs=()):\n"
    "        super().__init__()\n"
    "        for k, v in pairs:\n"
    "            k = str(k).lower()\n"
    "            super().__setitem__(k, v if k not in self else self[k] + \", \" + v)\n"
    "\n"
    "    def __getitem__(self, k):\n"
    "        return super().__getitem__(str(k).lower())\n"
    "\n"
    "    def __contains__(self, k):\n"
    "        return super().__contains__(str(k).lower())\n"
    "\n"
    "    def get(self, k, default=None):\n"
    "        return super().get(str(k).lower(), default)\n"
    "\n"
    "\n"
    "class Response:\n"
    "    def __init__(self, status_code, headers, content, url, method):\n"
    "        self.status_code = status_code\n"
    "        self.headers = Headers(headers)\n"
    "        self.content = content\n"
    "        self.url = url\n"
    "        self.method = method\n"
    "\n"
    "    @property\n"
    "    def text(self):\n"
    "        return self.content.decode(\"utf-8\", \"replace\")\n"
    "\n"
    "    @property\n"
    "    def is_success(self):\n"
    "        return 200 <= self.status_code < 300\n"
    "\n"
    "    @property\n"
    "    def is_error(self):\n"
    "        return self.status_code >= 400\n"
    "\n"
    "    @property\n"
    "    def reason_phrase(self):\n"
    "        import http\n"
    "        try:\n"
    "            return http.HTTPStatus(self.status_code).phrase\n"
    "        except ValueError:\n"
    "            return \"\"\n"
    "\n"
    "    def json(self):\n"
    "        return _json.loads(self.content)\n"
    "\n"
    "    def raise_for_status(self):\n"
    "        if self.status_code >= 400:\n"
    "            kind = \"Client error\" if self.status_code < 500 else \"Server error\"\n"
    "            raise HTTPStatusError(\"%s '%d %s' for url '%s'\" % (\n"
    "                kind, self.status_code, self.reason_phrase, self.url), response=self)\n"
    "        return self\n"
    "\n"
    "    def __repr__(self):\n"
    "        return \"<Response [%d %s]>\" % (self.status_code, self.reason_phrase)\n"
    "\n"
    "\n"
    "def _merge_params(url, params):\n"
    "    if not params:\n"
    "        return url\n"
    "    items = list(params.items()) if isinstance(params, dict) else list(params)\n"
    "    flat = []\n"
    "    for k, v in items:\n"
    "        if isinstance(v, (list, tuple)):\n"
    "            flat.extend((k, x) for x in v)\n"
    "        else:\n"
    "            flat.append((k, v))\n"
    "    parts = _up.urlsplit(url)\n"
    "    query = parts.query + (\"&\" if parts.query else \"\") + _up.urlencode(flat)\n"
    "    return _up.urlunsplit(parts._replace(query=query))\n"
    "\n"
    "\n"
    "class HttpClient:\n"
    "    \"\"\"The subset of httpx.AsyncClient that workflows use; every request goes to the "
    "parent.\"\"\"\n"
    "\n"
    "    def __init__(self, timeout):\n"
    "        self.timeout = timeout\n"
    "\n"
    "    async def request(self, method, url, *, params=None, headers=None, json=None, data=None,\n"
    "                      content=None, timeout=None, **_ignored):\n"
    "        hdrs = [[str(k), str(v)] for k, v in (headers or {}).items()]\n"
    "        body = b\"\"\n"
    "        if json is not None:\n"
    "            body = _json.dumps(json).encode()\n"
    "            hdrs.append([\"Content-Type\", \"application/json\"])\n"
    "        elif isinstance(data, dict):\n"
    "            body = _up.urlencode(data, doseq=True).encode()\n"
    "            hdrs.append([\"Content-Type\", \"application/x-www-form-urlencoded\"])\n"
    "        elif data is not None or content is not None:\n"
    "            raw = data if data is not None else content\n"
    "            body = raw.encode() if isinstance(raw, str) else bytes(raw)\n"
    "        full = _merge_params(str(url), params)\n"
    "        t = self.timeout if timeout is None else timeout\n"
    "        reply = _call({\"t\": \"http\", \"method\": str(method).upper(), \"url\": full, "
    "\"headers\": hdrs,\n"
    "                       \"body_b64\": _b64.b64encode(body).decode(), \"timeout\": t})\n"
    "        if reply.get(\"t\") != \"http_resp\":\n"
    "            kind = reply.get(\"kind\")\n"
    "            msg = reply.get(\"message\", \"request failed\")\n"
    "            if kind == \"blocked\":\n"
    "                raise SSRFBlockedError(msg)\n"
    "            if kind == \"timeout\":\n"
    "                raise TimeoutException(msg)\n"
    "            raise RequestError(msg)\n"
    "        return Response(reply[\"status\"], reply.get(\"headers\", []),\n"
    "                        _b64.b64decode(reply.get(\"body_b64\", \"\")), full, "
    "str(method).upper())\n"
    "\n"
    "    async def get(self, url, **kw):\n"
    "        return await self.request(\"GET\", url, **kw)\n"
    "\n"
    "    async def post(self, url, **kw):\n"
    "        return await self.request(\"POST\", url, **kw)\n"
    "\n"
    "    async def put(self, url, **kw):\n"
    "        return await self.request(\"PUT\", url, **kw)\n"
    "\n"
    "    async def patch(self, url, **kw):\n"
    "        return await self.request(\"PATCH\", url, **kw)\n"
    "\n"
    "    async def delete(self, url, **kw):\n"
    "        return await self.request(\"DELETE\", url, **kw)\n"
    "\n"
    "    async def head(self, url, **kw):\n"
    "        return await self.request(\"HEAD\", url, **kw)\n"
    "\n"
    "\n"
    "class WorkflowLogger:\n"
    "    def _emit(self, level, message, extra):\n"
    "        entry = {\"level\": level, \"message\": str(message),\n"
    "                 \"ts\": _time.strftime(\"%Y-%m-%dT%H:%M:%S\", _time.gmtime()) + \"Z\"}\n"
    "        if extra:\n"
    "            entry[\"extra\"] = {str(k): v for k, v in extra.items()}\n"
    "        _send({\"t\": \"log\", \"entry\": entry})\n"
    "\n"
    "    def info(self, message, **kw):\n"
    "        self._emit(\"info\", message, kw)\n"
    "\n"
    "    def warning(self, message, **kw):\n"
    "        self._emit(\"warning\", message, kw)\n"
    "\n"
    "    def error(self, message, **kw):\n"
    "        self._emit(\"error\", message, kw)\n"
    "\n"
    "    def debug(self, message, **kw):\n"
    "        self._emit(\"debug\", message, kw)\n"
    "\n"
    "    def __call__(self, message, **kw):\n"
    "        self._emit(\"info\", message, kw)\n"
    "\n"
    "\n"
    "class SecretsAccessor:\n"
    "    \"\"\"Only the secrets the workflow declared and an admin allowed; nothing else exists "
    "here.\"\"\"\n"
    "\n"
    "    def __init__(self, allowed):\n"
    "        self._values = {str(k): str(v) for k, v in (allowed or {}).items()}\n"
    "\n"
    "    def get(self, name, default=None):\n"
    "        return self._values.get(str(name), default)\n"
    "\n"
    "\n"
    "class IntegrationError(Exception):\n"
    "    \"\"\"An Okta/Entra call that failed: the HTTP status and the request line, never a "
    "token.\"\"\"\n"
    "\n"
    "\n"
    "async def _integration_call(name, http, method, url, path, **kw):\n"
    "    try:\n"
    "        resp = await http.request(method, url, **kw)\n"
    "    except RequestError as e:\n"
    "        raise IntegrationError(\"%s request %s %s failed: %s\" % (name, method, path, e)"
    ") from None\n"
    "    if resp.status_code >= 400:\n"
    "        raise IntegrationError(\"%s API answered HTTP %d to %s %s\" % (\n"
    "            name, resp.status_code, method, path))\n"
    "    return resp\n"
    "\n"
    "\n"
    "def _json_or_empty(resp):\n"
    "    try:\n"
    "        body = resp.json()\n"
    "    except ValueError:\n"
    "        return {}\n"
    "    return body if isinstance(body, dict) else {}\n"
    "\n"
    "\n"
    "def _account_segment(value, aliases):\n"
    "    \"\"\"One URL path segment naming an account: never empty, never a dot segment (which\n"
    "    the HTTP client would resolve to another path) and never an alias of the API's own\n"
    "    caller (Okta's 'me').\"\"\"\n"
    "    v = str(value)\n"
    "    if not v.strip() or v.strip(\".\") == \"\" or v.lower() in aliases:\n"
    "        raise IntegrationError(\"invalid account name %r\" % (v[:64],))\n"
    "    return _up.quote(v, safe=\"\")\n"
    "\n"
    "\n"
    "class OktaClient:\n"
    "    \"\"\"Okta user lifecycle actions over ctx.http (the parent's SSRF guard and limits "
    "apply).\n"
    "    Base https://{domain}/api/v1 (OKTA_BASE_URL overrides it), Authorization: SSWS <toke"
    "n>.\"\"\"\n"
    "\n"
    "    def __init__(self, domain, api_token, http, base_url=None):\n"
    "        self.domain = str(domain)\n"
    "        self._base = str(base_url or (\"https://%s/api/v1\" % self.domain)).rstrip(\"/\")\n"
    "        self._headers = {\"Authorization\": \"SSWS \" + str(api_token),\n"
    "                         \"Accept\": \"application/json\"}\n"
    "        self._http = http\n"
    "\n"
    "    def __repr__(self):\n"
    "        return \"OktaClient(domain=%r)\" % self.domain\n"
    "\n"
    "    async def _call(self, method, path, params=None):\n"
    "        return await _integration_call(\"Okta\", self._http, method, self._base + path, "
    "path,\n"
    "                                       headers=self._headers, params=params)\n"
    "\n"
    "    async def _user_id(self, login):\n"
    "        path = \"/users/\" + _account_segment(login, (\"me\",))\n"
    "        uid = _json_or_empty(await self._call(\"GET\", path)).get(\"id\")\n"
    "        if not isinstance(uid, str) or not uid:\n"
    "            raise IntegrationError(\"Okta API answered GET %s without a user id\" % path)\n"
    "        return _up.quote(uid, safe=\"\")\n"
    "\n"
    "    async def revoke_sessions(self, login):\n"
    "        uid = await self._user_id(login)\n"
    "        await self._call(\"DELETE\", \"/users/%s/sessions\" % uid)\n"
    "\n"
    "    async def _lifecycle(self, login, action, params=None):\n"
    "        uid = await self._user_id(login)\n"
    "        return await self._call(\"POST\", \"/users/%s/lifecycle/%s\" % (uid, action), pa"
    "rams)\n"
    "\n"
    "    async def suspend_user(self, login):\n"
    "        await self._lifecycle(login, \"suspend\")\n"
    "\n"
    "    async def unsuspend_user(self, login):\n"
    "        await self._lifecycle(login, \"unsuspend\")\n"
    "\n"
    "    async def reset_password(self, login):\n"
    "        resp = await self._lifecycle(login, \"reset_password\", {\"sendEmail\": \"true\"})\n"
    "        return _json_or_empty(resp).get(\"resetPasswordUrl\")\n"
    "\n"
    "    async def expire_password(self, login):\n"
    "        await self._lifecycle(login, \"expire_password\")\n"
    "\n"
    "\n"
    "class EntraClient:\n"
    "    \"\"\"Microsoft Entra ID (Graph) account actions over ctx.http. A client-credentials"
    " token from\n"
    "    {ENTRA_LOGIN_URL or https://login.microsoftonline.com}/{tenant}/oauth2/v2.0/token, k"
    "ept for\n"
    "    the run; Graph base ENTRA_GRAPH_URL or https://graph.microsoft.com/v1.0.\"\"\"\n"
    "\n"
    "    def __init__(self, tenant_id, client_id, client_secret, http, login_url=None,\n"
    "                 graph_url=None):\n"
    "        self.tenant_id = str(tenant_id)\n"
    "        self.client_id = str(client_id)\n"
    "        self._secret = str(client_secret)\n"
    "        login = str(login_url or \"https://login.microsoftonline.com\").rstrip(\"/\")\n"
    "        self._token_url = \"%s/%s/oauth2/v2.0/token\" % (login, _up.quote(self.tenant_id"
    ", safe=\"\"))\n"
    "        self._graph = str(graph_url or \"https://graph.microsoft.com/v1.0\").rstrip(\"/\")\n"
    "        self._http = http\n"
    "        self._token = None\n"
    "\n"
    "    def __repr__(self):\n"
    "        return \"EntraClient(tenant_id=%r, client_id=%r)\" % (self.tenant_id, self.clien"
    "t_id)\n"
    "\n"
    "    async def _bearer(self):\n"
    "        if self._token is None:\n"
    "            form = {\"grant_type\": \"client_credentials\", \"client_id\": self.client_id,\n"
    "                    \"client_secret\": self._secret,\n"
    "                    \"scope\": \"https://graph.microsoft.com/.default\"}\n"
    "            resp = await _integration_call(\"Entra\", self._http, \"POST\", self._token_url,\n"
    "                                           \"/oauth2/v2.0/token\", data=form)\n"
    "            token = _json_or_empty(resp).get(\"access_token\")\n"
    "            if not isinstance(token, str) or not token:\n"
    "                raise IntegrationError(\"Entra token endpoint answered without an access"
    "_token\")\n"
    "            self._token = token\n"
    "        return self._token\n"
    "\n"
    "    async def _call(self, method, path, json=None):\n"
    "        headers = {\"Authorization\": \"Bearer \" + await self._bearer(),\n"
    "                   \"Accept\": \"application/json\"}\n"
    "        return await _integration_call(\"Entra\", self._http, method, self._graph + path"
    ", path,\n"
    "                                       headers=headers, json=json)\n"
    "\n"
    "    def _user(self, user_id):\n"
    "        return \"/users/\" + _account_segment(user_id, ())\n"
    "\n"
    "    async def revoke_sessions(self, user_id):\n"
    "        await self._call(\"POST\", self._user(user_id) + \"/revokeSignInSessions\")\n"
    "\n"
    "    async def disable_account(self, user_id):\n"
    "        await self._call(\"PATCH\", self._user(user_id), {\"accountEnabled\": False})\n"
    "\n"
    "    async def enable_account(self, user_id):\n"
    "        await self._call(\"PATCH\", self._user(user_id), {\"accountEnabled\": True})\n"
    "\n"
    "    async def reset_mfa(self, user_id):\n"
    "        \"\"\"Deletes every authentication method but the password, each through its type's\n"
    "        collection (#microsoft.graph.phoneAuthenticationMethod -> phoneMethods/{id}).\"\"\"\n"
    "        base = self._user(user_id) + \"/authentication\"\n"
    "        methods = _json_or_empty(await self._call(\"GET\", base + \"/methods\")).get(\"v"
    "alue\")\n"
    "        deleted = 0\n"
    "        for m in methods if isinstance(methods, list) else []:\n"
    "            kind = str(m.get(\"@odata.type\", \"\")) if isinstance(m, dict) else \"\"\n"
    "            mid = m.get(\"id\") if isinstance(m, dict) else None\n"
    "            if \"password\" in kind.lower() or not isinstance(mid, str) or not mid:\n"
    "                continue\n"
    "            name = kind.rsplit(\".\", 1)[-1]\n"
    "            if name.endswith(\"AuthenticationMethod\"):\n"
    "                name = name[:-len(\"AuthenticationMethod\")]\n"
    "            if not name:\n"
    "                raise IntegrationError(\"Entra method %r has no usable @odata.type\" % mid)\n"
    "            await self._call(\"DELETE\", \"%s/%sMethods/%s\" % (\n"
    "                base, _up.quote(name, safe=\"\"), _up.quote(mid, safe=\"\")))\n"
    "            deleted += 1\n"
    "        return deleted\n"
    "\n"
    "\n"
    "class IntegrationClients:\n"
    "    \"\"\"ctx.integrations: a client only for a built-in (system) workflow whose integra"
    "tion is\n"
    "    configured; None otherwise (every user workflow sees both None).\"\"\"\n"
    "\n"
    "    def __init__(self, okta=None, entra=None):\n"
    "        self.okta = okta\n"
    "        self.entra = entra\n"
    "\n"
    "\n"
    "def _integrations(conf, http):\n"
    "    conf = conf if isinstance(conf, dict) else {}\n"
    "    o = conf.get(\"okta\")\n"
    "    e = conf.get(\"entra\")\n"
    "    okta = entra = None\n"
    "    if isinstance(o, dict) and o.get(\"domain\") and o.get(\"api_token\"):\n"
    "        okta = OktaClient(o[\"domain\"], o[\"api_token\"], http, o.get(\"base_url\"))\n"
    "    if isinstance(e, dict) and e.get(\"tenant_id\") and e.get(\"client_id\") and e.get"
    "(\"client_secret\"):\n"
    "        entra = EntraClient(e[\"tenant_id\"], e[\"client_id\"], e[\"client_secret\"], http,\n"
    "                            e.get(\"login_url\"), e.get(\"graph_url\"))\n"
    "    return IntegrationClients(okta, entra)\n"
    "\n"
    "\n"
    "class WorkflowContext:\n"
    "    def __init__(self, indicator, alert, http, log, secrets, trigger=None, "
    "integrations=None):\n"
    "        self.indicator = indicator\n"
    "        self.alert = alert\n"
    "        self.http = http\n"
    "        self.log = log\n"
    "        self.secrets = secrets\n"
    "        self.trigger = trigger\n"
    "        self.integrations = integrations if integrations is not None else "
    "IntegrationClients()\n"
    "\n"
    "\n"
    "class _Stream:\n"
    "    def __init__(self, name):\n"
    "        self.name = name\n"
    "        self.pending = \"\"\n"
    "\n"
    "    def write(self, s):\n"
    "        self.pending += str(s)\n"
    "        while \"\\n\" in self.pending:\n"
    "            line, self.pending = self.pending.split(\"\\n\", 1)\n"
    "            _send({\"t\": \"log\", \"entry\": {\"level\": \"info\", \"message\": line,\n"
    "                                         \"ts\": _time.strftime(\"%Y-%m-%dT%H:%M:%SZ\", "
    "_time.gmtime()),\n"
    "                                         \"extra\": {\"stream\": self.name}}})\n"
    "        return len(s)\n"
    "\n"
    "    def flush(self):\n"
    "        pass\n"
    "\n"
    "\n"
    "PUBLIC = (\"WorkflowContext\", \"WorkflowResult\", \"IndicatorContext\", \"AlertContext\",\n"
    "          \"TriggerContext\", \"WorkflowLogger\", \"SecretsAccessor\", \"HttpClient\", "
    "\"Response\",\n"
    "          \"HTTPError\", \"RequestError\", \"TimeoutException\", \"HTTPStatusError\", "
    "\"SSRFBlockedError\",\n"
    "          \"IntegrationClients\", \"OktaClient\", \"EntraClient\", \"IntegrationError\")\n"
    "\n"
    "\n"
    "def install_modules():\n"
    "    \"\"\"calseta, calseta.workflows, app, app.workflows and app.workflows.context.\"\"\"\n"
    "    api = types.ModuleType(\"calseta.workflows\", \"Workflow API: WorkflowContext, "
    "WorkflowResult.\")\n"
    "    for name in PUBLIC:\n"
    "        setattr(api, name, globals()[name])\n"
    "    ctxmod = types.ModuleType(\"app.workflows.context\")\n"
    "    for name in PUBLIC:\n"
    "        setattr(ctxmod, name, globals()[name])\n"
    "    for pkg, sub, mod in ((\"calseta\", \"workflows\", api), (\"app\", \"workflows\", "
    "None)):\n"
    "        parent = types.ModuleType(pkg)\n"
    "        parent.__path__ = []\n"
    "        sys.modules[pkg] = parent\n"
    "        if mod is None:\n"
    "            mod = types.ModuleType(\"app.workflows\")\n"
    "            mod.__path__ = []\n"
    "            mod.context = ctxmod\n"
    "            sys.modules[\"app.workflows.context\"] = ctxmod\n"
    "        setattr(parent, sub, mod)\n"
    "        sys.modules[pkg + \".\" + sub] = mod\n"
    "\n"
    "\n"
    "_VIEWS = {}\n"
    "\n"
    "\n"
    "def _update_wrapper(wrapper, wrapped):\n"
    "    \"\"\"functools.update_wrapper with its fixed attribute lists only: assigned=/updated= "
    "would\n"
    "    copy attributes named by (computed) strings, a getattr by another name.\"\"\"\n"
    "    return _functools.update_wrapper(wrapper, wrapped)\n"
    "\n"
    "\n"
    "def _wraps(wrapped):\n"
    "    return _functools.partial(_update_wrapper, wrapped=wrapped)\n"
    "\n"
    "\n"
    "def _deepcopy(x):\n"
    "    \"\"\"copy.deepcopy without a caller's memo, which would keep every intermediate object "
    "of the\n"
    "    copy (the classes and the __dict__ of what is copied) for the caller to read.\"\"\"\n"
    "    return _copy.deepcopy(x)\n"
    "\n"
    "\n"
    "# What a module view leaves out (attribute access by a computed name) or replaces.\n"
    "_HIDDEN = {\n"
    "    \"operator\": frozenset((\"attrgetter\", \"methodcaller\")),\n"
    "    \"string\": frozenset((\"Formatter\",)),\n"
    "    \"logging\": frozenset((\"Formatter\", \"StrFormatStyle\")),\n"
    "    \"typing\": frozenset((\"get_type_hints\",)),\n"
    "    \"functools\": frozenset((\"singledispatch\", \"singledispatchmethod\")),\n"
    "}\n"
    "_REPLACED = {\n"
    "    \"functools\": {\"update_wrapper\": _update_wrapper, \"wraps\": _wraps},\n"
    "    \"copy\": {\"deepcopy\": _deepcopy},\n"
    "}\n"
    "\n"
    "\n"
    "def _view(mod):\n"
    "    \"\"\"A copy of a module without private names, modules outside the allowed list, or the\n"
    "    computed-attribute gadgets of _HIDDEN/_REPLACED.\"\"\"\n"
    "    name = mod.__name__\n"
    "    if name in _VIEWS:\n"
    "        return _VIEWS[name]\n"
    "    if name.startswith(\"calseta\") or name.startswith(\"app\"):\n"
    "        return mod\n"
    "    v = types.ModuleType(name, getattr(mod, \"__doc__\", None))\n"
    "    _VIEWS[name] = v\n"
    "    hidden = _HIDDEN.get(name, ())\n"
    "    replaced = _REPLACED.get(name, {})\n"
    "    for k, val in list(vars(mod).items()):\n"
    "        if k.startswith(\"_\") or k in hidden:\n"
    "            continue\n"
    "        if k in replaced:\n"
    "            val = replaced[k]\n"
    "        if isinstance(val, types.ModuleType):\n"
    "            if not _val.module_allowed(val.__name__) or val.__name__.split(\".\")[0] in "
    "_val.BLOCKED:\n"
    "                continue\n"
    "            val = _view(val)\n"
    "        setattr(v, k, val)\n"
    "    return v\n"
    "\n"
    "\n"
    "# Private modules that C code of the allowed modules imports on demand (datetime.strptime "
    "and\n"
    "# time.strptime import _strptime through the caller's __import__): served to that C code "
    "only.\n"
    "_INTERNAL = frozenset((\"_strptime\",))\n"
    "\n"
    "\n"
    "def _guarded_import(name, globals=None, locals=None, fromlist=(), level=0):\n"
    "    if level:\n"
    "        raise ImportError(\"relative imports are not allowed\")\n"
    "    if name in _INTERNAL and not fromlist and name in sys.modules:\n"
    "        return sys.modules[name]\n"
    "    if name.split(\".\")[0] in _val.BLOCKED or not _val.module_allowed(name):\n"
    "        raise ImportError(\"import of '%s' is not allowed\" % name)\n"
    "    mod = sys.modules.get(name)\n"
    "    if mod is None:\n"
    "        raise ImportError(\"module '%s' is not available in the workflow sandbox\" % name)\n"
    "    if fromlist:\n"
    "        for item in fromlist:\n"
    "            sub = sys.modules.get(name + \".\" + item)\n"
    "            if sub is not None and _val.module_allowed(sub.__name__):\n"
    "                _view(sub)\n"
    "        return _view(mod)\n"
    "    return _view(sys.modules[name.split(\".\")[0]])\n"
    "\n"
    "\n"
    "def safe_builtins():\n"
    "    blocked = _val.BLOCKED_CALLS | _val.BLOCKED_NAMES\n"
    "    b = {k: v for k, v in vars(builtins).items() if not k.startswith(\"__\") and k not in "
    "blocked}\n"
    "    b[\"__import__\"] = _guarded_import\n"
    "    b[\"__name__\"] = \"workflow\"\n"
    "    return b\n"
    "\n"
    "\n"
    "class _Run:\n"
    "    loop = None\n"
    "\n"
    "\n"
    "def child_prepare(mode):\n"
    "    import os\n"
    "    os.environ.clear()\n"
    "    try:\n"
    "        import posix\n"
    "        posix.environ.clear()\n"
    "    except Exception:\n"
    "        pass\n"
    "    sys.stdin = None\n"
    "    sys.stdout = _Stream(\"stdout\")\n"
    "    sys.stderr = _Stream(\"stderr\")\n"
    "    if mode == \"run\":\n"
    "        _Run.loop = asyncio.new_event_loop()\n"
    "        asyncio.set_event_loop(_Run.loop)\n"
    "\n"
    "\n"
    "def child_validate(code):\n"
    "    try:\n"
    "        errors = _val.validate(code)\n"
    "    except MemoryError:\n"
    "        errors = [(0, \"Line 0: validation ran out of memory\")]\n"
    "    _send({\"t\": \"validated\", \"errors\": [[l, m] for (l, m) in errors]})\n"
    "\n"
    "\n"
    "def _fail(message, data=None):\n"
    "    return WorkflowResult.fail(message, data)\n"
    "\n"
    "\n"
    "def _build_ctx(req):\n"
    "    ind = req.get(\"indicator\") or {}\n"
    "    alert = req.get(\"alert\")\n"
    "    trig = req.get(\"trigger_context\") or {}\n"
    "    http = HttpClient(req.get(\"timeout_seconds\", 30))\n"
    "    return WorkflowContext(\n"
    "        IndicatorContext(ind if isinstance(ind, dict) else {}),\n"
    "        AlertContext(alert) if isinstance(alert, dict) else None,\n"
    "        http, WorkflowLogger(),\n"
    "        SecretsAccessor(req.get(\"secrets\")),\n"
    "        TriggerContext(trig if isinstance(trig, dict) else {}),\n"
    "        _integrations(req.get(\"integrations\"), http))\n"
    "\n"
    "\n"
    "def _execute(code, req, use_ast, use_pyguard, arm):\n"
    "    if use_ast:\n"
    "        errors = _val.validate(code)\n"
    "        if errors:\n"
    "            return _fail(\"Workflow code failed validation: \" + \"; \".join(m for _, m in "
    "errors))\n"
    "    linecache.cache[\"<workflow>\"] = (len(code), None, code.splitlines(True), "
    "\"<workflow>\")\n"
    "    try:\n"
    "        compiled = compile(code, \"<workflow>\", \"exec\")\n"
    "    except SyntaxError as e:\n"
    "        return _fail(\"Syntax error in workflow code: %s (line %s)\" % (e.msg, e.lineno))\n"
    "    g = {\"__builtins__\": safe_builtins() if use_pyguard else builtins.__dict__,\n"
    "         \"__name__\": \"workflow\"}\n"
    "    ctx = _build_ctx(req)\n"
    "    try:\n"
    "        if use_pyguard:\n"
    "            # arms the guard's audit hook (for good) and runs the module body: from here on "
    "no\n"
    "            # frame, code object, compile/exec, import, file, process or socket for anyone\n"
    "            _guard.exec_module(compiled, g, arm)\n"
    "        else:\n"
    "            exec(compiled, g)\n"
    "    except MemoryError:\n"
    "        raise\n"
    "    except BaseException:\n"
    "        return _fail(\"Error loading workflow code:\\n\" + _guard.format_exc())\n"
    "    run = g.get(\"run\")\n"
    "    if run is None or not _guard.is_coroutine_function(run):\n"
    "        return _fail(\"Workflow code must define an async function named 'run'\")\n"
    "    try:\n"
    "        result = _Run.loop.run_until_complete(run(ctx))\n"
    "    except MemoryError:\n"
    "        raise\n"
    "    except BaseException:\n"
    "        return _fail(\"Workflow raised an exception:\\n\" + _guard.format_exc())\n"
    "    if not isinstance(result, WorkflowResult):\n"
    "        return _fail(\"Workflow returned unexpected type: %s\" % type(result).__name__)\n"
    "    return result\n"
    "\n"
    "\n"
    "_REHEARSAL = (\"from calseta.workflows import WorkflowResult\\n\"\n"
    "              \"async def run(ctx):\\n\"\n"
    "              \"    v = ctx.indicator.value\\n\"\n"
    "              \"    return WorkflowResult.ok('r', {'v': v, 'n': [1, 2.5, None]})\\n\")\n"
    "\n"
    "\n"
    "def child_rehearse(use_ast, use_pyguard):\n"
    "    \"\"\"A warm child walks the whole run path once with a fixed workflow of ours, so that\n"
    "    the pages a run touches are copied before its request arrives, not after.\"\"\"\n"
    "    req = {\"indicator\": {\"type\": \"ip\", \"value\": \"192.0.2.1\"}, \"timeout_seconds\": "
    "1}\n"
    "    try:\n"
    "        r = _execute(_REHEARSAL, req, use_ast, use_pyguard, False)\n"
    "        _json.loads(_json.dumps(r.data, default=str))\n"
    "    except BaseException:\n"
    "        pass\n"
    "\n"
    "\n"
    "def freeze():\n"
    "    \"\"\"Called once in the zygote: everything loaded so far leaves the collector's view, "
    "so\n"
    "    a child's collections do not touch (and copy) the zygote's pages.\"\"\"\n"
    "    import gc\n"
    "    gc.collect()\n"
    "    gc.freeze()\n"
    "\n"
    "\n"
    "def child_run(code, req_json, use_ast, use_pyguard):\n"
    "    req = _json.loads(req_json)\n"
    "    try:\n"
    "        result = _execute(code, req, use_ast, use_pyguard, True)\n"
    "    except MemoryError:\n"
    "        result = None\n"
    "    if result is None:\n"
    "        limit = req.get(\"max_memory_mb\", 0)\n"
    "        result = _fail(\"Workflow exceeded its memory limit (%s MB)\" % limit)\n"
    "    try:\n"
    "        data = _json.loads(_json.dumps(result.data, default=str))\n"
    "    except Exception:\n"
    "        data = {\"repr\": repr(result.data)}\n"
    "    _send({\"t\": \"result\", \"success\": result.success, \"message\": result.message, "
    "\"data\": data})\n";
