# The catalog's prices now live in the price book (0005 copied them); in a migration of its own, since PostgreSQL
# refuses to alter a table in the transaction that just inserted rows referencing it.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('gateway', '0005_price_book'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='catalogmodel',
            name='catalogmodel_prices_non_negative',
        ),
        migrations.RemoveField(
            model_name='catalogmodel',
            name='cached_price_nusd',
        ),
        migrations.RemoveField(
            model_name='catalogmodel',
            name='image_prices',
        ),
        migrations.RemoveField(
            model_name='catalogmodel',
            name='input_price_nusd',
        ),
        migrations.RemoveField(
            model_name='catalogmodel',
            name='output_price_nusd',
        ),
    ]
