"""Seed the demo team for `make run`: an owner login, $5 of credit, one live and one test key.

Idempotent: a second run changes nothing and prints the existing login. Unlike real keys (shown once, never
stored in plaintext), the demo keys are kept in var/demo_keys.json (mode 0600) so every start can print them.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from accounts.models import Team

DEMO_SLUG = "demo"
DEMO_EMAIL = "owner@demo.tollgate.localhost"
DEMO_PASSWORD = "tollgate-demo"


class Command(BaseCommand):
    help = "Create the demo team, owner, credit and keys if they do not exist yet."

    def handle(self, *args, **opts):
        keys_file = settings.VAR_DIR / "demo_keys.json"
        if not Team.objects.filter(slug=DEMO_SLUG).exists():
            from io import StringIO

            out = StringIO()
            call_command(
                "create_team",
                DEMO_SLUG,
                owner=DEMO_EMAIL,
                password=DEMO_PASSWORD,
                name="Demo team",
                credits="5",
                key=["demo-live"],
                test_key=["demo-test"],
                json=True,
                stdout=out,
            )
            data = json.loads(out.getvalue())
            settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
            keys_file.write_text(json.dumps(data["keys"], indent=2))
            keys_file.chmod(0o600)
        from accounts.models import User

        User.objects.filter(email=DEMO_EMAIL).update(is_staff=True, is_superuser=True)
        keys = json.loads(keys_file.read_text()) if keys_file.exists() else []
        live = next((k["key"] for k in keys if k["mode"] == "live"), "<your key>")
        base = settings.PUBLIC_BASE_URL
        self.stdout.write(f"""
Tollgate is seeded.
  Dashboard and admin: {base}/login/  and  {base}/admin/
  Log in as:           {DEMO_EMAIL} / {DEMO_PASSWORD}
  Demo keys (kept in {keys_file} for this demo; keys you create in the dashboard are shown once):
{chr(10).join(f"    {k['mode']:4}  {k['key']}" for k in keys)}

Try it:
  curl {base}/v1/chat/completions -H "Authorization: Bearer {live}" \\
       -H "Content-Type: application/json" \\
       -d '{{"model": "demo-chat", "messages": [{{"role": "user", "content": "Hello"}}]}}'

  python -c "from openai import OpenAI; c = OpenAI(base_url='{base}/v1', api_key='{live}'); \\
r = c.chat.completions.create(model='demo-chat', messages=[{{'role': 'user', 'content': 'Hello'}}]); \\
print(r.choices[0].message.content)"
""")
