"""One module per area of the Engine API; each has register(router, engine)."""


def register_all(router, engine):
    from berth.api.routes import build, containers, df, execs, images, security, system, trust, volumes, networks
    from berth.api.routes import distribution, image_transfer, plugins, session, swarm
    for mod in (system, containers, execs, images, volumes, networks, df, trust, security, build,
                image_transfer, distribution, swarm, plugins, session):
        mod.register(router, engine)
