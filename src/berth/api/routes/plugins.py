"""/plugins: berthd has no managed plugins, so the list is empty and every
verb on a named plugin answers dockerd's "not found". Installing one (pull,
create) is refused by name rather than half done."""
from berth.api import filters as F
from berth.api.errors import HTTPError
from berth.api.http import json_response

NO_PLUGINS = "berthd has no managed plugins (docker plugin install/create are not supported)"
KNOWN_FILTERS = {"capability", "enable"}


def not_found(req):
    raise HTTPError(404, f'plugin "{req.params["name"]}" not found')


def register(router, engine):
    def list_(req):
        F.check(F.parse(req.q("filters")), KNOWN_FILTERS, "plugins")
        return json_response([])

    def privileges(req):
        # what a plugin would need: there is none to install, so nothing
        return json_response([])

    def install(req):
        raise HTTPError(500, NO_PLUGINS)

    def enable(req):
        t = req.q("timeout", "")
        if not t.lstrip("-").isdigit():
            # dockerd parses the timeout before looking the plugin up
            raise HTTPError(500, f'strconv.Atoi: parsing "{t}": invalid syntax')
        not_found(req)

    router.add("GET", "/plugins", list_)
    router.add("GET", "/plugins/privileges", privileges)
    router.add("POST", "/plugins/pull", install)
    router.add("POST", "/plugins/create", install)
    router.add("GET", "/plugins/{name:.+}/json", not_found)
    router.add("DELETE", "/plugins/{name:.+}", not_found)
    router.add("POST", "/plugins/{name:.+}/enable", enable)
    for verb in ("disable", "set", "push", "upgrade"):
        router.add("POST", f"/plugins/{{name:.+}}/{verb}", not_found)
