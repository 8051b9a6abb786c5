"""A whole distributed deployment on this machine, each service a ``clinic run`` OS process.

``deployment.deployed`` starts it (migrations, certificates, the authorization server, every
service, the nginx gateway) isolated in its own PostgreSQL schema, AMQP prefix, Redis prefix, data
directory and ports, and removes all of it afterwards. ``clinic bench`` measures it; the e2e tests
break it. ``oauth_client`` signs people in (code flow + PKCE) for their tokens; ``otlp`` receives
the spans the services export.
"""
