from finetunekit.cli import main

main()
